// Naive double-precision reference of the layer stack and its neuron models (docs/method.md,
// sections 2-6, docs/neuron-models.md, ops/lif_stack.hpp), written independently of
// saltatory/kernels/ so every backend can be checked against it.
// Layouts: membrane, activity and their gradients [T, B, N] at ((t * B + b) * N + j);
// W [n_in, n_out] input-major at (i * n_out + j); W_rec [n_out, n_out]; lists [T, B, K].
//   a[t][j]  activity fed downstream: 1 for an emitted spike (list entry k < n_spk), else 0
//   theta1   per neuron: theta1_j = Layer::theta1[j], or config.theta1 for all when it is empty;
//            theta2 is layer-wide (config.theta2)
//   I[t]     = bias + sum_i a_in[t'][i] W[i, :] + sum_i a[t-1][i] W_rec[i, :]
//              t' = t (layer 0, same_step coupling) or t - 1 (delayed coupling; nothing at t = 0)
//   V[t]     = alpha V[t-1] (1 - r[t]) + g (1 - alpha) I[t]   (ResetMode::state, spike: to zero)
//            = alpha V[t-1] - theta1 r[t] + g (1 - alpha) I[t] (ResetMode::subtract),  V[-1] = 0
//   cuba:      Isyn[t] = alpha_syn Isyn[t-1] + I[t] (Isyn[-1] = 0) drives V in the place of I
//   alif:      A[t] = rho A[t-1] + (1 - rho) a[t-1] (A[-1] = 0); every threshold moves by b A[t]:
//              theta1 + b A[t] for spikes and resets, theta2 + b A[t] for candidates (zero resets)
//   adlif:     w[t] = rho w[t-1] + (1 - rho) (a_w V[t-1] + b a[t-1]) (w[-1] = 0) and
//              V[t] = alpha V[t-1] (1 - r[t]) + (1 - alpha) (g I[t] - w[t]) (zero resets)
//   r[t]     = H(V[t-1] - theta1) (state, subtract) or [j emitted at t-1] (spike)
//   S[t]     = {V > theta1} ascending, first K kept (rest dropped), then {theta2 < V <= theta1}
//              ascending while capacity lasts; K = capacity, or n_out in Mode::dense. A neuron
//              with theta1_j <= theta2 has no candidates, only spikes.
// Readout: r = 0, no selection, output V. Backward (BPTT, time reversed), gA = dL/d(activity);
// r[t] is detached everywhere (a constant of the backward):
//   gV[t]    = c[t+1] gV[t+1] + listed[t][j] gA[t][j] sigma'(V[t][j] - theta1)
//              (readout: gV[t] = alpha gV[t+1] + gA[t][j])
//   c[t+1]   = alpha (ResetGrad::pass) or alpha (1 - r[t+1]) (ResetGrad::mask); alpha for
//              subtract (either reset_grad: reset_grad is ignored) and for the readout
//   gI[t]    = g (1 - alpha) gV[t];  dbias += gI;  dW[i, :] += a_in[t'][i] gI[t]
//              cuba: gIsyn[t] = alpha_syn gIsyn[t+1] + g (1 - alpha) gV[t], gI[t] = gIsyn[t],
//              dalpha_syn += gIsyn[t] Isyn[t-1], and Isyn in the place of I in dalpha
//   alif:      gA[t] += (1 - rho) gAd[t+1] before the surrogate (a[t] feeds A[t+1]), with
//              gAd[t] = rho gAd[t+1] - b local[t] (dL/dA), drho += gAd[t] (A[t-1] - a[t-1]),
//              db -= local[t] A[t], local = listed gA sigma'(V - theta1 - b A)
//   adlif:     gA[t] += (1 - rho) b gw[t+1] and gV[t] += (1 - rho) a_w gw[t+1], with
//              gw[t] = rho gw[t+1] - (1 - alpha) gV[t] (dL/dw), drho += gw[t] (w[t-1] - a_w V[t-1]
//              - b a[t-1]), db += gw[t] (1 - rho) a[t-1], da_w += gw[t] (1 - rho) V[t-1], and
//              g I - w in the place of g I in dalpha
//   gA_in[t'][i] += W[i, :] . gI[t];  gA[t-1][i] += W_rec[i, :] . gI[t]   (recurrent)
//   dalpha  += gV[t] (V[t-1] (1 - r[t]) - g I[t])   (zero resets, pass and mask alike)
//              gV[t] (V[t-1] - g I[t])              (subtract and readout)
//   dtheta1 -= listed[t][j] gA[t][j] sigma'(V[t][j] - theta1)   (+ gV[t] r[t] for subtract)
// Sums run over t and b; dalpha, dtheta1 are the direct partials of V[t] and S[t] with V[t-1],
// r[t] and I[t] held fixed (the recursion carries the rest).
// List entry gradients are gA gathered at ids_k for k < n_tot (spikes and candidates), 0 beyond.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "saltatory/core/spikes.hpp"
#include "saltatory/ops/lif_stack.hpp"

namespace saltatory::reference {

/// Parameters of one layer in double. `config` is authoritative for the layer's settings.
struct Layer {
  LayerConfig config;
  std::vector<double> weight;      ///< [n_in * n_out], input-major
  std::vector<double> weight_rec;  ///< [n_out * n_out] for recurrent_lif, else empty
  std::vector<double> bias;        ///< [n_out] when config.bias, else empty
  std::vector<double> alpha;       ///< [n_out]
  /// [n_out] finite spike thresholds theta1_j (spiking layers); empty: config.theta1 for every
  /// neuron. A theta1_j may lie below config.theta2 (config.theta2 <= config.theta1 is still
  /// required). Must be empty for a readout. (`{}` keeps five-member aggregate initializers free
  /// of missing-initializer warnings.)
  std::vector<double> theta1{};
  /// [n_out] synaptic decay of a cuba layer (config.neuron); empty otherwise.
  std::vector<double> alpha_syn{};
  /// [n_out] adaptation decay and strength of an alif or adlif layer; empty otherwise.
  std::vector<double> rho{}, b{};
  /// [n_out] subthreshold adaptation a_w of an adlif layer; empty otherwise.
  std::vector<double> a{};
};

/// Result of a reference forward pass.
struct Forward {
  std::vector<SpikeTensor> spikes;            ///< per spiking layer (lif / recurrent_lif)
  std::vector<std::vector<double>> membrane;  ///< per layer (all kinds), V [T * B * n_out]
  std::vector<std::vector<double>>
      synaptic;                             ///< per layer, Isyn [T * B * n_out] (cuba; else empty)
  std::vector<double> readout;              ///< [T * B * n_out] of a final readout, else empty
  std::vector<int64_t> dropped;             ///< spikes lost to capacity, per spiking layer
  std::vector<int64_t> dropped_candidates;  ///< gradient candidates lost, per spiking layer
};

/// Gradients of a reference backward pass (per layer; empty where the layer has no such parameter).
struct Gradients {
  std::vector<std::vector<double>> weight, weight_rec, bias;
  std::vector<std::vector<double>> alpha;  ///< dL/dalpha [n_out], every layer
  /// dL/dtheta1_j [n_out], spiking layers (also when Layer::theta1 is empty); readout: empty.
  std::vector<std::vector<double>> theta1;
  std::vector<std::vector<double>> alpha_syn;  ///< dL/dalpha_syn [n_out], cuba layers; else empty
  std::vector<std::vector<double>> rho, b;     ///< dL/drho, dL/db [n_out], alif, adlif layers
  std::vector<std::vector<double>> a;          ///< dL/da_w [n_out], adlif layers; else empty
  std::vector<double> input;  ///< dL/d(input list entries) [T * B * K_0] (dense [T * B * N_0] in
                              ///< detail::trace_backward)
};

namespace detail {

/// Throws std::invalid_argument unless `ok`.
inline void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("[reference] " + what);
}

inline size_t at(int t, int b, int B, int n) {
  return (static_cast<size_t>(t) * B + b) * static_cast<size_t>(n);
}

/// Surrogate derivative sigma'(x), x = V - theta1.
inline double surrogate_grad(Surrogate kind, double x, double beta) {
  const double pi = 3.14159265358979323846;
  switch (kind) {
    case Surrogate::arctan: {
      const double u = 0.5 * pi * beta * x;
      return 0.5 * beta / (1.0 + u * u);
    }
    case Surrogate::triangle: return std::max(0.0, 1.0 - beta * std::fabs(x));
    case Surrogate::sigmoid: {
      const double s = 1.0 / (1.0 + std::exp(-beta * x));
      return beta * s * (1.0 - s);
    }
    case Surrogate::super_spike:
    default: {
      const double d = beta * std::fabs(x) + 1.0;
      return 1.0 / (d * d);
    }
  }
}

/// A smooth step F with F' = surrogate_grad exactly (test hook for finite differences):
/// x / (beta |x| + 1), atan(pi/2 beta x) / pi, the integrated triangle, sigmoid(beta x).
inline double surrogate_step(Surrogate kind, double x, double beta) {
  const double pi = 3.14159265358979323846;
  switch (kind) {
    case Surrogate::arctan: return std::atan(0.5 * pi * beta * x) / pi;
    case Surrogate::triangle:
      if (beta * std::fabs(x) >= 1.0) return x > 0 ? 0.5 / beta : -0.5 / beta;
      return x - 0.5 * beta * x * std::fabs(x);
    case Surrogate::sigmoid: return 1.0 / (1.0 + std::exp(-beta * x));
    case Surrogate::super_spike:
    default: return x / (beta * std::fabs(x) + 1.0);
  }
}

/// How a spiking layer's activity a[t][j] is computed from its membrane, x = V - theta1_j.
///   spikes:     the method: a = 1 for emitted spikes, listed = the list's first n_tot entries.
///   smooth:     test hook: a = surrogate_step(x), every neuron listed, so the surrogate BPTT is
///               the exact gradient of this forward (in theta1 too: dF/dtheta1 = -sigma').
///   linearized: test hook: a = a_base + listed_base sigma'(x_base) (x - x_base), listed =
///               listed_base, x_base = V_base - theta1_base, so the surrogate BPTT at the base is
///               its exact gradient.
/// With a `base` trace, what the BPTT treats as detached is frozen at the base: the reset
/// decision r = r_base (every mode), and for a zero reset with ResetGrad::pass the V[t-1] of the
/// reset, which enters as the offset alpha V_base[t-1] r_base[t] (alpha live). So a zero reset is
/// alpha V[t-1] (1 - r_base) (mask) or alpha V[t-1] - alpha V_base[t-1] r_base (pass), and a
/// subtract reset is alpha V[t-1] - theta1 r_base (theta1 live; either reset_grad), matching the
/// carries and the direct alpha / theta1 partials of trace_backward.
/// Without a base, smooth decides resets by the state rule (H(V[t-1] - theta1)) whatever
/// config.reset says; subtract still subtracts.
enum class Activation { spikes, smooth, linearized };

/// Everything a forward pass leaves for backward, dense.
struct Trace {
  int T = 0, B = 0;
  Forward out;                               ///< out.spikes / dropped filled for Activation::spikes
  std::vector<std::vector<double>> act;      ///< per layer a [T * B * n_out] (readout: empty)
  std::vector<std::vector<uint8_t>> listed;  ///< per layer, 1 = gets a surrogate gradient
  std::vector<std::vector<double>> reset;    ///< per layer r[t] [T * B * n_out] (readout: 0)
  std::vector<std::vector<double>> theta1;   ///< per layer theta1_j used [n_out] (readout: empty)
  /// per layer A[t] (alif) or w[t] (adlif) [T * B * n_out]; else empty
  std::vector<std::vector<double>> adapt;
  std::vector<std::vector<double>> b;  ///< per layer b_j used [n_out] (alif; else empty)
};

/// The threshold offset b_j A[t] of entry `i` = (t, b, j) of layer l of a trace (0 but for alif).
inline double threshold_shift(const Trace& tr, size_t l, size_t i, int n) {
  return tr.b[l].empty() ? 0.0 : tr.b[l][i % static_cast<size_t>(n)] * tr.adapt[l][i];
}

/// A[t] of an alif layer from its activity: A[t] = rho A[t-1] + (1 - rho) a[t-1].
inline void adaptation_row(const std::vector<double>& rho, const std::vector<double>& act,
                           std::vector<double>& adapt, int t, int b, int B, int n) {
  const size_t row = (static_cast<size_t>(t) * B + b) * n, prev = row - static_cast<size_t>(B) * n;
  for (int j = 0; j < n; ++j)
    adapt[row + j] = t > 0 ? rho[j] * adapt[prev + j] + (1.0 - rho[j]) * act[prev + j] : 0.0;
}

/// List capacity of a spiking layer.
inline int capacity_of(const StackConfig& config, const LayerConfig& layer) {
  return config.mode == Mode::dense ? layer.n_out : layer.capacity;
}

/// Validates the stack against its parameters and an input of `n_input` neurons.
inline void check_stack(const StackConfig& config, const std::vector<Layer>& layers, int n_input) {
  require(!layers.empty(), "empty stack");
  require(config.overflow == OverflowPolicy::lowest_ids, "only the lowest_ids policy is modelled");
  require(config.layers.empty() || config.layers.size() == layers.size(),
          "config.layers and layers differ in length");
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerConfig& c = layers[l].config;
    const std::string name = "layer " + std::to_string(l) + ": ";
    if (!config.layers.empty()) {
      const LayerConfig& s = config.layers[l];
      require(s.kind == c.kind && s.n_in == c.n_in && s.n_out == c.n_out,
              name + "config.layers disagrees with layers[l].config");
    }
    require(c.n_in > 0 && c.n_out > 0, name + "sizes must be positive");
    require(c.n_in == (l == 0 ? n_input : layers[l - 1].config.n_out), name + "n_in mismatch");
    require(c.kind != LayerKind::readout || l + 1 == layers.size(), name + "readout must be last");
    require(layers[l].weight.size() == static_cast<size_t>(c.n_in) * c.n_out, name + "weight size");
    const size_t n_rec =
        c.kind == LayerKind::recurrent_lif ? static_cast<size_t>(c.n_out) * c.n_out : 0;
    require(layers[l].weight_rec.size() == n_rec, name + "weight_rec size");
    require(layers[l].bias.size() == (c.bias ? static_cast<size_t>(c.n_out) : 0),
            name + "bias size");
    require(layers[l].alpha.size() == static_cast<size_t>(c.n_out), name + "alpha size");
    const bool cuba = c.neuron == kernels::neurons::Neuron::cuba;
    require(!cuba || c.kind != LayerKind::readout, name + "a readout is not a cuba layer");
    require(layers[l].alpha_syn.size() == (cuba ? static_cast<size_t>(c.n_out) : 0),
            name + "alpha_syn size");
    const bool alif = c.neuron == kernels::neurons::Neuron::alif,
               adlif = c.neuron == kernels::neurons::Neuron::adlif;
    require(!(alif || adlif) || c.kind != LayerKind::readout, name + "a readout does not adapt");
    require(!(alif || adlif) || c.reset != ResetMode::subtract,
            name + "adaptive models reset to zero");
    require(layers[l].rho.size() == (alif || adlif ? static_cast<size_t>(c.n_out) : 0) &&
                layers[l].b.size() == layers[l].rho.size() &&
                layers[l].a.size() == (adlif ? static_cast<size_t>(c.n_out) : 0),
            name + "rho, b and a sizes");
    const std::vector<double>& theta1 = layers[l].theta1;
    if (c.kind == LayerKind::readout) {
      require(theta1.empty(), name + "a readout has no theta1");
    } else {
      require(capacity_of(config, c) > 0, name + "capacity must be positive");
      // Layer-wide, as the ops validate it; a per-neuron theta1_j may lie below theta2.
      require(c.theta2 <= c.theta1, name + "theta2 must not exceed theta1");
      require(theta1.empty() || theta1.size() == static_cast<size_t>(c.n_out),
              name + "theta1 size");
      for (double x : theta1) require(std::isfinite(x), name + "theta1 must be finite");
    }
  }
}

/// What both passes read off layer l's configuration.
struct LayerShape {
  int n_in, n;
  bool spiking, recurrent;
  int lag;  ///< 1 when layer l consumes layer l-1's step t-1 (delayed coupling), else 0
};

/// `c` is layer l's configuration (the reference reads it from its Layer, not config.layers).
inline LayerShape shape_of(const StackConfig& config, const LayerConfig& c, size_t l) {
  return {c.n_in, c.n_out, c.kind != LayerKind::readout, c.kind == LayerKind::recurrent_lif,
          (l > 0 && config.coupling == Coupling::delayed) ? 1 : 0};
}

/// Spike thresholds theta1_j [n_out] of a spiking layer (Layer::theta1, or config.theta1 for every
/// neuron when that is empty); empty for a readout.
inline std::vector<double> thresholds_of(const Layer& layer) {
  const LayerConfig& c = layer.config;
  if (c.kind == LayerKind::readout) return {};
  if (!layer.theta1.empty()) return layer.theta1;
  return std::vector<double>(static_cast<size_t>(c.n_out), static_cast<double>(c.theta1));
}

/// Input current I[t] [n] of batch row b into `current`: bias, the input activity `a_in` of step
/// t - lag and, for a recurrent layer, its own activity `a` of step t - 1.
inline void input_current(const Layer& layer, const LayerShape& shape,
                          const std::vector<double>& a_in, const std::vector<double>& a, int t,
                          int b, int B, std::vector<double>& current) {
  const auto [n_in, n, spiking, recurrent, lag] = shape;
  for (int j = 0; j < n; ++j) current[j] = layer.config.bias ? layer.bias[j] : 0.0;
  if (t - lag >= 0) {
    const double* x = &a_in[at(t - lag, b, B, n_in)];
    for (int i = 0; i < n_in; ++i)
      if (x[i] != 0.0)
        for (int j = 0; j < n; ++j) current[j] += x[i] * layer.weight[i * n + j];
  }
  if (recurrent && t > 0) {
    const double* x = &a[at(t - 1, b, B, n)];
    for (int i = 0; i < n; ++i)
      if (x[i] != 0.0)
        for (int j = 0; j < n; ++j) current[j] += x[i] * layer.weight_rec[i * n + j];
  }
}

/// Checks list invariants and returns the dense activity [T * B * N] (1 for entries k < n_spk).
inline std::vector<double> dense_spikes(const SpikeView& s) {
  require(s.T > 0 && s.B > 0 && s.K > 0 && s.N > 0, "spike view sizes must be positive");
  std::vector<double> dense(static_cast<size_t>(s.T) * s.B * s.N, 0.0);
  std::vector<uint8_t> seen(s.N);
  for (int t = 0; t < s.T; ++t)
    for (int b = 0; b < s.B; ++b) {
      const int n_spk = s.spikes(t, b), n_tot = s.total(t, b);
      require(0 <= n_spk && n_spk <= n_tot && n_tot <= s.K, "list counts out of range");
      std::fill(seen.begin(), seen.end(), 0);
      for (int k = 0; k < n_tot; ++k) {
        const int32_t id = s.list(t, b)[k];
        require(id >= 0 && id < s.N, "list id out of range");
        require(!seen[id], "duplicate id in a list");
        seen[id] = 1;
        if (k < n_spk) dense[at(t, b, s.B, s.N) + id] = 1.0;
      }
    }
  return dense;
}

/// Forward pass over dense input activity `input` [T * B * n_in of layer 0].
/// `base` (required for linearized) freezes resets and supplies the linearization point.
inline Trace trace_forward(const StackConfig& config, const std::vector<Layer>& layers, int T,
                           int B, const std::vector<double>& input, Activation activation,
                           const Trace* base = nullptr) {
  check_stack(config, layers, layers.empty() ? 0 : layers[0].config.n_in);
  require(T > 0 && B > 0, "T and B must be positive");
  require(input.size() == static_cast<size_t>(T) * B * layers[0].config.n_in, "input size");
  require(activation != Activation::linearized || base != nullptr, "linearized needs a base");
  require(
      base == nullptr || (base->T == T && base->B == B && base->reset.size() == layers.size() &&
                          base->theta1.size() == layers.size() && base->b.size() == layers.size()),
      "base trace does not match");
  const size_t L = layers.size();
  Trace tr;
  tr.T = T;
  tr.B = B;
  tr.out.membrane.resize(L);
  tr.out.synaptic.resize(L);
  tr.act.resize(L);
  tr.listed.resize(L);
  tr.reset.resize(L);
  tr.theta1.resize(L);
  tr.adapt.resize(L);
  tr.b.resize(L);
  for (size_t l = 0; l < L; ++l) {
    const Layer& layer = layers[l];
    const LayerConfig& c = layer.config;
    const LayerShape shape = shape_of(config, c, l);
    const auto [n_in, n, spiking, recurrent, lag] = shape;
    const std::vector<double>& a_in = l == 0 ? input : tr.act[l - 1];
    const double theta2 = c.theta2, gain = c.gain, beta = c.beta;
    const std::vector<double>& theta1 = tr.theta1[l] = thresholds_of(layer);
    const bool subtract = spiking && c.reset == ResetMode::subtract;
    const size_t size = static_cast<size_t>(T) * B * n;
    std::vector<double>& v = tr.out.membrane[l];
    std::vector<double>& syn = tr.out.synaptic[l];
    std::vector<double>& r = tr.reset[l];
    std::vector<double>& a = tr.act[l];
    std::vector<uint8_t>& listed = tr.listed[l];
    const bool cuba = !layer.alpha_syn.empty(), adlif = !layer.a.empty(),
               alif = !layer.rho.empty() && !adlif;
    v.assign(size, 0.0);
    r.assign(size, 0.0);
    if (cuba) syn.assign(size, 0.0);
    if (alif || adlif) tr.adapt[l].assign(size, 0.0);
    tr.b[l] = alif ? layer.b : std::vector<double>{};
    const auto shift = [&](size_t i) { return threshold_shift(tr, l, i, n); };
    if (spiking) {
      a.assign(size, 0.0);
      listed.assign(size, 0);
    }
    const int K = spiking ? capacity_of(config, c) : 0;
    SpikeTensor lists;
    if (spiking && activation == Activation::spikes) lists = SpikeTensor(T, B, K, n);
    int64_t dropped = 0, dropped_candidates = 0;
    std::vector<double> current(n);
    for (int t = 0; t < T; ++t)
      for (int b = 0; b < B; ++b) {
        const size_t row = at(t, b, B, n);
        input_current(layer, shape, a_in, a, t, b, B, current);
        if (alif) adaptation_row(layer.rho, a, tr.adapt[l], t, b, B, n);
        for (int j = 0; j < n; ++j) {
          const double al = layer.alpha[j];
          const size_t prev = t > 0 ? row - static_cast<size_t>(B) * n + j : 0;
          const double v_prev = t > 0 ? v[prev] : 0.0;
          if (cuba) {  // the synaptic current drives the membrane
            syn[row + j] = (t > 0 ? layer.alpha_syn[j] * syn[prev] : 0.0) + current[j];
            current[j] = syn[row + j];
          }
          double w = 0.0;  // adlif: the adaptation current, off the input
          if (adlif && t > 0)
            w = tr.adapt[l][row + j] =
                layer.rho[j] * tr.adapt[l][prev] +
                (1.0 - layer.rho[j]) * (layer.a[j] * v_prev + layer.b[j] * a[prev]);
          double rj = 0.0;
          if (spiking && t > 0) {
            if (base != nullptr)
              rj = base->reset[l][row + j];
            else if (c.reset == ResetMode::spike && activation == Activation::spikes)
              rj = a[prev];  // 1 exactly for spikes emitted at t-1
            else
              rj = v_prev > theta1[j] + shift(prev) ? 1.0 : 0.0;
          }
          r[row + j] = rj;
          double leak;
          if (subtract)
            leak = al * v_prev - theta1[j] * rj;
          else if (base != nullptr && c.reset_grad == ResetGrad::pass && rj != 0.0)
            leak = al * v_prev - al * base->out.membrane[l][prev] * rj;
          else
            leak = al * v_prev * (1.0 - rj);
          v[row + j] = leak + (1.0 - al) * (gain * current[j] - w);
        }
        if (!spiking) continue;
        if (activation == Activation::spikes) {
          int32_t* ids = lists.list(t, b);
          int kept = 0, count = 0;
          for (int j = 0; j < n; ++j)
            if (v[row + j] > theta1[j] + shift(row + j)) {
              ++count;
              if (kept < K) ids[kept++] = j;
            }
          const int n_spk = kept;
          dropped += count - kept;
          for (int j = 0; j < n; ++j)
            if (v[row + j] > theta2 + shift(row + j) && v[row + j] <= theta1[j] + shift(row + j)) {
              if (kept < K)
                ids[kept++] = j;
              else
                ++dropped_candidates;
            }
          lists.n_spk(t, b) = n_spk;
          lists.n_tot(t, b) = kept;
          for (int k = 0; k < kept; ++k) {
            listed[row + ids[k]] = 1;
            if (k < n_spk) a[row + ids[k]] = 1.0;
          }
        } else if (activation == Activation::smooth) {
          for (int j = 0; j < n; ++j) {
            a[row + j] = surrogate_step(c.surrogate, v[row + j] - theta1[j] - shift(row + j), beta);
            listed[row + j] = 1;
          }
        } else {
          for (int j = 0; j < n; ++j) {
            const double xb = base->out.membrane[l][row + j] - base->theta1[l][j] -
                              threshold_shift(*base, l, row + j, n);
            listed[row + j] = base->listed[l][row + j];
            a[row + j] = base->act[l][row + j];
            if (listed[row + j])
              a[row + j] += surrogate_grad(c.surrogate, xb, beta) *
                            (v[row + j] - theta1[j] - shift(row + j) - xb);
          }
        }
      }
    if (spiking && activation == Activation::spikes) {
      lists.set_dropped({dropped, dropped_candidates});
      tr.out.spikes.push_back(std::move(lists));
      tr.out.dropped.push_back(dropped);
      tr.out.dropped_candidates.push_back(dropped_candidates);
    }
    if (!spiking) tr.out.readout = v;
  }
  return tr;
}

/// Rebuilds the dense trace of a forward pass from its result (lists, membranes).
inline Trace trace_from_forward(const StackConfig& config, const std::vector<Layer>& layers, int T,
                                int B, const Forward& fwd) {
  check_stack(config, layers, layers.empty() ? 0 : layers[0].config.n_in);
  const size_t L = layers.size();
  require(fwd.membrane.size() == L, "forward result has the wrong number of layers");
  Trace tr;
  tr.T = T;
  tr.B = B;
  tr.out = fwd;
  tr.act.resize(L);
  tr.listed.resize(L);
  tr.reset.resize(L);
  tr.theta1.resize(L);
  tr.adapt.resize(L);
  tr.b.resize(L);
  for (size_t l = 0; l < L; ++l) {
    const LayerConfig& c = layers[l].config;
    const int n = c.n_out;
    tr.b[l] = layers[l].a.empty() ? layers[l].b : std::vector<double>{};  // alif's threshold
    const std::vector<double>& theta1 = tr.theta1[l] = thresholds_of(layers[l]);
    const size_t size = static_cast<size_t>(T) * B * n;
    require(fwd.membrane[l].size() == size, "membrane size");
    require(
        layers[l].alpha_syn.empty() || (l < fwd.synaptic.size() && fwd.synaptic[l].size() == size),
        "synaptic current size (cuba)");
    tr.reset[l].assign(size, 0.0);
    if (c.kind == LayerKind::readout) continue;
    require(l < fwd.spikes.size(), "missing spike lists");
    const SpikeTensor& s = fwd.spikes[l];
    require(s.T() == T && s.B() == B && s.N() == n && s.K() == capacity_of(config, c),
            "spike list shape");
    tr.act[l] = dense_spikes(s.view());
    tr.listed[l].assign(size, 0);
    const SpikeView view = s.view();
    for (int t = 0; t < T; ++t)
      for (int b = 0; b < B; ++b)
        for (int k = 0; k < view.total(t, b); ++k)
          tr.listed[l][at(t, b, B, n) + view.list(t, b)[k]] = 1;
    const std::vector<double>&rho = layers[l].rho, &bs = layers[l].b, &aw = layers[l].a;
    if (!rho.empty()) tr.adapt[l].assign(size, 0.0);  // the adaptation, from the emitted spikes
    for (int t = 0; t < T && !rho.empty(); ++t)
      for (int b = 0; b < B; ++b) {
        if (aw.empty()) {
          adaptation_row(rho, tr.act[l], tr.adapt[l], t, b, B, n);
          continue;
        }
        for (int j = 0; j < n && t > 0; ++j) {  // adlif's w[t]
          const size_t i = at(t, b, B, n) + j, prev = at(t - 1, b, B, n) + j;
          tr.adapt[l][i] =
              rho[j] * tr.adapt[l][prev] +
              (1.0 - rho[j]) * (aw[j] * fwd.membrane[l][prev] + bs[j] * tr.act[l][prev]);
        }
      }
    for (int t = 1; t < T; ++t)
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < n; ++j) {
          const size_t prev = at(t - 1, b, B, n) + j;
          tr.reset[l][at(t, b, B, n) + j] =
              c.reset == ResetMode::spike
                  ? tr.act[l][prev]
                  : (fwd.membrane[l][prev] > theta1[j] + threshold_shift(tr, l, prev, n));
        }
  }
  return tr;
}

/// BPTT over a dense trace. `grad_act[l]` is dL/d(activity) [T * B * n_out] of a spiking layer or
/// dL/dV of the readout (empty = zero). Returns parameter gradients and the dense input gradient.
inline Gradients trace_backward(const StackConfig& config, const std::vector<Layer>& layers,
                                const std::vector<double>& input, const Trace& trace,
                                const std::vector<std::vector<double>>& grad_act) {
  const int T = trace.T, B = trace.B;
  const size_t L = layers.size();
  check_stack(config, layers, layers[0].config.n_in);
  require(grad_act.size() <= L, "too many output gradients");
  Gradients g;
  g.weight.resize(L);
  g.weight_rec.resize(L);
  g.bias.resize(L);
  g.alpha.resize(L);
  g.theta1.resize(L);
  g.alpha_syn.resize(L);
  g.rho.resize(L);
  g.b.resize(L);
  g.a.resize(L);
  g.input.assign(input.size(), 0.0);
  std::vector<std::vector<double>> ga(L);
  for (size_t l = 0; l < L; ++l) {
    const size_t size = static_cast<size_t>(T) * B * layers[l].config.n_out;
    if (l < grad_act.size() && !grad_act[l].empty()) {
      require(grad_act[l].size() == size, "output gradient size");
      ga[l] = grad_act[l];
    } else {
      ga[l].assign(size, 0.0);
    }
  }
  for (size_t l = L; l-- > 0;) {
    const Layer& layer = layers[l];
    const LayerConfig& c = layer.config;
    const LayerShape shape = shape_of(config, c, l);
    const auto [n_in, n, spiking, recurrent, lag] = shape;
    const std::vector<double>& a_in = l == 0 ? input : trace.act[l - 1];
    std::vector<double>& ga_in = l == 0 ? g.input : ga[l - 1];
    const std::vector<double>& v = trace.out.membrane[l];
    const std::vector<double>& r = trace.reset[l];
    const std::vector<double> theta1 = thresholds_of(layer);
    const bool subtract = spiking && c.reset == ResetMode::subtract;
    const double gain = c.gain, beta = c.beta;
    std::vector<double>& dw = g.weight[l];
    dw.assign(static_cast<size_t>(n_in) * n, 0.0);
    if (recurrent) g.weight_rec[l].assign(static_cast<size_t>(n) * n, 0.0);
    if (c.bias) g.bias[l].assign(n, 0.0);
    g.alpha[l].assign(n, 0.0);
    if (spiking) g.theta1[l].assign(n, 0.0);
    const bool cuba = !layer.alpha_syn.empty();
    const std::vector<double>* syn = cuba ? &trace.out.synaptic[l] : nullptr;
    if (cuba) g.alpha_syn[l].assign(n, 0.0);
    std::vector<double> gv_next(static_cast<size_t>(B) * n, 0.0), gi(n), current(n);
    std::vector<double> gsyn_next(cuba ? static_cast<size_t>(B) * n : 0, 0.0);
    const bool adlif = !layer.a.empty(), alif = !layer.rho.empty() && !adlif;
    if (alif || adlif) {
      g.rho[l].assign(n, 0.0);
      g.b[l].assign(n, 0.0);
    }
    if (adlif) g.a[l].assign(n, 0.0);
    // dL/dA[t+1] (alif) or dL/dw[t+1] (adlif)
    std::vector<double> gadapt_next(alif || adlif ? static_cast<size_t>(B) * n : 0, 0.0);
    for (int t = T - 1; t >= 0; --t)
      for (int b = 0; b < B; ++b) {
        const size_t row = at(t, b, B, n);
        input_current(layer, shape, a_in, trace.act[l], t, b, B, current);
        for (int j = 0; j < n; ++j) {
          const double al = layer.alpha[j];
          double carry = 0.0;
          if (t + 1 < T) {
            double factor = al;
            if (spiking && !subtract && c.reset_grad == ResetGrad::mask)
              factor *= 1.0 - r[at(t + 1, b, B, n) + j];
            carry = factor * gv_next[static_cast<size_t>(b) * n + j];
            if (adlif)  // V[t] feeds w[t+1]
              carry +=
                  (1.0 - layer.rho[j]) * layer.a[j] * gadapt_next[static_cast<size_t>(b) * n + j];
          }
          double local = 0.0;  // gA dS/dV = -gA dS/dtheta1 (readout: gA = dL/dV)
          double entry = spiking ? ga[l][row + j] : 0.0;  // dL/da[t]
          if (alif && t + 1 < T)                          // a[t] feeds A[t+1]
            entry += (1.0 - layer.rho[j]) * gadapt_next[static_cast<size_t>(b) * n + j];
          if (adlif && t + 1 < T)  // a[t] feeds w[t+1]
            entry +=
                (1.0 - layer.rho[j]) * layer.b[j] * gadapt_next[static_cast<size_t>(b) * n + j];
          if (!spiking)
            local = ga[l][row + j];
          else if (trace.listed[l][row + j])
            local = entry *
                    surrogate_grad(c.surrogate,
                                   v[row + j] - theta1[j] - threshold_shift(trace, l, row + j, n),
                                   beta);
          if (alif) {  // dL/dA[t] = rho dL/dA[t+1] + da[t]/dA[t] dL/da[t]
            double& gadapt = gadapt_next[static_cast<size_t>(b) * n + j];
            gadapt = (t + 1 < T ? layer.rho[j] * gadapt : 0.0) - layer.b[j] * local;
            if (t > 0) {
              const size_t prev = row - static_cast<size_t>(B) * n + j;
              g.rho[l][j] += gadapt * (trace.adapt[l][prev] - trace.act[l][prev]);
            }
            g.b[l][j] -= local * trace.adapt[l][row + j];
          }
          const double gv = carry + local;
          gv_next[static_cast<size_t>(b) * n + j] = gv;
          gi[j] = gain * (1.0 - al) * gv;
          double w = 0.0;  // adlif: dL/dw[t] = rho dL/dw[t+1] + dV[t]/dw[t] gV[t]
          if (adlif) {
            double& gw = gadapt_next[static_cast<size_t>(b) * n + j];
            gw = (t + 1 < T ? layer.rho[j] * gw : 0.0) - (1.0 - al) * gv;
            w = trace.adapt[l][row + j];
            if (t > 0) {
              const size_t prev = row - static_cast<size_t>(B) * n + j;
              const double s_prev = trace.act[l][prev], v_before = v[prev];
              g.rho[l][j] +=
                  gw * (trace.adapt[l][prev] - layer.a[j] * v_before - layer.b[j] * s_prev);
              g.b[l][j] += gw * (1.0 - layer.rho[j]) * s_prev;
              g.a[l][j] += gw * (1.0 - layer.rho[j]) * v_before;
            }
          }
          if (cuba) {  // gIsyn[t] = alpha_syn gIsyn[t+1] + dL/dIsyn of V[t];  gI = gIsyn
            double& gsyn = gsyn_next[static_cast<size_t>(b) * n + j];
            gsyn = (t + 1 < T ? layer.alpha_syn[j] * gsyn : 0.0) + gi[j];
            gi[j] = gsyn;
            if (t > 0) g.alpha_syn[l][j] += gsyn * (*syn)[row - static_cast<size_t>(B) * n + j];
          }
          // Direct partials of V[t] (V[t-1], r[t], I[t] fixed) and of S[t] = H(V[t] - theta1).
          const double v_prev = t > 0 ? v[row - static_cast<size_t>(B) * n + j] : 0.0;
          const double v_kept = subtract ? v_prev : v_prev * (1.0 - r[row + j]);
          const double drive = cuba ? (*syn)[row + j] : current[j];
          g.alpha[l][j] += gv * (v_kept - (gain * drive - w));
          if (spiking) g.theta1[l][j] -= local + (subtract ? gv * r[row + j] : 0.0);
        }
        if (c.bias)
          for (int j = 0; j < n; ++j) g.bias[l][j] += gi[j];
        if (t - lag >= 0) {
          const size_t in_row = at(t - lag, b, B, n_in);
          for (int i = 0; i < n_in; ++i) {
            double dot = 0.0;
            for (int j = 0; j < n; ++j) {
              dw[i * n + j] += a_in[in_row + i] * gi[j];
              dot += layer.weight[i * n + j] * gi[j];
            }
            ga_in[in_row + i] += dot;
          }
        }
        if (recurrent && t > 0) {
          const size_t prev = at(t - 1, b, B, n);
          for (int i = 0; i < n; ++i) {
            double dot = 0.0;
            for (int j = 0; j < n; ++j) {
              g.weight_rec[l][i * n + j] += trace.act[l][prev + i] * gi[j];
              dot += layer.weight_rec[i * n + j] * gi[j];
            }
            ga[l][prev + i] += dot;
          }
        }
      }
  }
  return g;
}

}  // namespace detail

/// Runs the stack forward over all T steps of `input` (per-layer settings from layers[l].config;
/// config supplies coupling, mode and overflow policy, which must be lowest_ids).
inline Forward forward(const StackConfig& config, const std::vector<Layer>& layers,
                       const SpikeView& input) {
  detail::require(!layers.empty() && input.N == layers[0].config.n_in, "input N != layer 0 n_in");
  const std::vector<double> dense = detail::dense_spikes(input);
  return detail::trace_forward(config, layers, input.T, input.B, dense, detail::Activation::spikes)
      .out;
}

/// BPTT of a forward pass. `grad_outputs[l]`: empty = zero; else dL/d(list entries) [T * B * K_l]
/// for a spiking layer (entries k >= n_tot ignored), dL/dV [T * B * n_out] for the readout.
inline Gradients backward(const StackConfig& config, const std::vector<Layer>& layers,
                          const SpikeView& input, const Forward& fwd,
                          const std::vector<std::vector<double>>& grad_outputs) {
  detail::require(!layers.empty() && input.N == layers[0].config.n_in, "input N != layer 0 n_in");
  detail::require(grad_outputs.size() <= layers.size(), "too many output gradients");
  const int T = input.T, B = input.B;
  const std::vector<double> dense = detail::dense_spikes(input);
  const detail::Trace trace = detail::trace_from_forward(config, layers, T, B, fwd);
  std::vector<std::vector<double>> grad_act(layers.size());
  for (size_t l = 0; l < grad_outputs.size(); ++l) {
    if (grad_outputs[l].empty()) continue;
    const int n = layers[l].config.n_out;
    if (layers[l].config.kind == LayerKind::readout) {
      detail::require(grad_outputs[l].size() == static_cast<size_t>(T) * B * n,
                      "readout grad size");
      grad_act[l] = grad_outputs[l];
      continue;
    }
    const SpikeView s = fwd.spikes[l].view();
    detail::require(grad_outputs[l].size() == static_cast<size_t>(T) * B * s.K, "entry grad size");
    grad_act[l].assign(static_cast<size_t>(T) * B * n, 0.0);
    for (int t = 0; t < T; ++t)
      for (int b = 0; b < B; ++b)
        for (int k = 0; k < s.total(t, b); ++k)
          grad_act[l][detail::at(t, b, B, n) + s.list(t, b)[k]] +=
              grad_outputs[l][detail::at(t, b, B, s.K) + k];
  }
  Gradients g = detail::trace_backward(config, layers, dense, trace, grad_act);
  std::vector<double> entries(static_cast<size_t>(T) * B * input.K, 0.0);
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b)
      for (int k = 0; k < input.total(t, b); ++k)
        entries[detail::at(t, b, B, input.K) + k] =
            g.input[detail::at(t, b, B, input.N) + input.list(t, b)[k]];
  g.input = std::move(entries);
  return g;
}

}  // namespace saltatory::reference
