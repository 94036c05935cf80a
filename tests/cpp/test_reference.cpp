// Tests of the double-precision reference (saltatory/reference). Hand-computed cases pin the
// forward semantics (resets, per-neuron thresholds, coupling, capacity, candidate order,
// recurrence) and small backward cases.
// Finite differences (FD) check BPTT only on forwards where FD is valid:
//   smooth:     spikes replaced by F(V - theta1) with F' = sigma', resets frozen  -> FD == BPTT
//   linearized: a = a0 + listed0 sigma'(x0) (x - x0), x = V - theta1, around the real forward,
//               resets frozen                                              -> FD == real backward
//   readout:    given fixed spikes, a readout is smooth in its own parameters -> FD == backward
// "Resets frozen" is what the BPTT detaches (see rd::Activation): the decisions r, and for a zero
// reset with ResetGrad::pass the offset's V[t-1]; alpha and theta1 stay live in the offsets.
// Every FD check records its worst errors as test properties (see FdWorst).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "saltatory/reference/reference.hpp"

namespace {

using namespace saltatory;
namespace ref = saltatory::reference;
namespace rd = saltatory::reference::detail;

/// Spikes and gradient-only candidates of one list.
struct ListSpec {
  std::vector<int32_t> spikes, candidates;
};

/// Lists [T, B, K] over N neurons from specs ordered (t, b).
SpikeTensor make_lists(int T, int B, int K, int N, const std::vector<ListSpec>& specs) {
  SpikeTensor s(T, B, K, N);
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b) {
      const ListSpec& spec = specs[static_cast<size_t>(t) * B + b];
      int k = 0;
      for (int32_t id : spec.spikes) s.list(t, b)[k++] = id;
      s.n_spk(t, b) = k;
      for (int32_t id : spec.candidates) s.list(t, b)[k++] = id;
      s.n_tot(t, b) = k;
    }
  return s;
}

/// The listed ids (k < n_tot) of list (t, b).
std::vector<int32_t> listed_ids(const SpikeTensor& s, int t, int b) {
  const SpikeView v = s.view();
  return std::vector<int32_t>(v.list(t, b), v.list(t, b) + v.total(t, b));
}

int n_spk(const SpikeTensor& s, int t, int b) { return s.view().spikes(t, b); }

LayerConfig layer_config(LayerKind kind, int n_in, int n_out, int capacity = 0, bool bias = false) {
  LayerConfig c;
  c.kind = kind;
  c.n_in = n_in;
  c.n_out = n_out;
  c.capacity = capacity;
  c.bias = bias;
  return c;
}

ref::Layer make_layer(const LayerConfig& c, std::vector<double> weight, std::vector<double> alpha,
                      std::vector<double> weight_rec = {}, std::vector<double> bias = {}) {
  return {c, std::move(weight), std::move(weight_rec), std::move(bias), std::move(alpha)};
}

StackConfig stack_config(const std::vector<ref::Layer>& layers,
                         Coupling coupling = Coupling::same_step, Mode mode = Mode::sparse) {
  StackConfig s;
  for (const ref::Layer& l : layers) s.layers.push_back(l.config);
  s.coupling = coupling;
  s.mode = mode;
  s.overflow = OverflowPolicy::lowest_ids;  // the reference models this policy
  return s;
}

std::vector<double> random_vector(size_t n, std::mt19937& rng, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = u(rng);
  return v;
}

/// Random parameters: weights U(w_lo, w_hi), bias U(0, b_hi), alpha U(0.6, 0.95), alpha_syn
/// (cuba layers) U(0.5, 0.9), rho (alif, adlif layers) U(0.5, 0.9), b U(0.2, 0.8) and a (adlif)
/// U(-0.5, 0.5).
std::vector<ref::Layer> random_stack(const std::vector<LayerConfig>& configs, std::mt19937& rng,
                                     double w_lo, double w_hi, double b_hi) {
  std::uniform_real_distribution<double> w(w_lo, w_hi), bias(0.0, b_hi), alpha(0.6, 0.95);
  std::vector<ref::Layer> layers;
  for (const LayerConfig& c : configs) {
    ref::Layer l{c, {}, {}, {}, {}};
    l.weight.resize(static_cast<size_t>(c.n_in) * c.n_out);
    for (double& x : l.weight) x = w(rng);
    if (c.kind == LayerKind::recurrent_lif) {
      l.weight_rec.resize(static_cast<size_t>(c.n_out) * c.n_out);
      for (double& x : l.weight_rec) x = w(rng);
    }
    if (c.bias) {
      l.bias.resize(c.n_out);
      for (double& x : l.bias) x = bias(rng);
    }
    l.alpha.resize(c.n_out);
    for (double& x : l.alpha) x = alpha(rng);
    if (c.neuron == kernels::neurons::Neuron::cuba)
      l.alpha_syn = random_vector(c.n_out, rng, 0.5, 0.9);
    if (c.neuron == kernels::neurons::Neuron::alif || c.neuron == kernels::neurons::Neuron::adlif) {
      l.rho = random_vector(c.n_out, rng, 0.5, 0.9);
      l.b = random_vector(c.n_out, rng, 0.2, 0.8);
    }
    if (c.neuron == kernels::neurons::Neuron::adlif) l.a = random_vector(c.n_out, rng, -0.5, 0.5);
    layers.push_back(std::move(l));
  }
  return layers;
}

/// Random lists [T, B, K] over N: up to K/2 + 1 spikes, the rest of the capacity maybe candidates.
SpikeTensor random_lists(int T, int B, int K, int N, std::mt19937& rng, bool candidates) {
  std::vector<ListSpec> specs;
  for (int i = 0; i < T * B; ++i) {
    std::vector<int32_t> perm(N);
    for (int j = 0; j < N; ++j) perm[j] = j;
    std::shuffle(perm.begin(), perm.end(), rng);
    const int n_spk = std::uniform_int_distribution<int>(0, K / 2 + 1)(rng);
    const int n_cand = candidates ? std::uniform_int_distribution<int>(0, K - n_spk)(rng) : 0;
    ListSpec spec;
    spec.spikes.assign(perm.begin(), perm.begin() + n_spk);
    spec.candidates.assign(perm.begin() + n_spk, perm.begin() + n_spk + n_cand);
    std::sort(spec.spikes.begin(), spec.spikes.end());
    std::sort(spec.candidates.begin(), spec.candidates.end());
    specs.push_back(spec);
  }
  return make_lists(T, B, K, N, specs);
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

/// Central difference of `loss` in `x`, restoring x.
double central_difference(const std::function<double()>& loss, double& x, double eps) {
  const double x0 = x;
  x = x0 + eps;
  const double up = loss();
  x = x0 - eps;
  const double down = loss();
  x = x0;
  return (up - down) / (2.0 * eps);
}

/// Worst disagreement of one kind of gradient with its finite differences, recorded as the test
/// properties `<name>_err` = max |g - fd| / (1 + |fd|) (what the checks bound) and `<name>_rel` =
/// max |g - fd| / |fd| over |fd| >= 1e-3.
struct FdWorst {
  double err = 0.0, rel = 0.0;
  int count = 0;
  void add(double grad, double fd) {
    const double diff = std::fabs(grad - fd);
    err = std::max(err, diff / (1.0 + std::fabs(fd)));
    if (std::fabs(fd) >= 1e-3) rel = std::max(rel, diff / std::fabs(fd));
    ++count;
  }
  void record(const std::string& name) const {
    if (count == 0) return;
    char text[32];
    std::snprintf(text, sizeof text, "%.2e", err);
    ::testing::Test::RecordProperty(name + "_err", text);
    std::snprintf(text, sizeof text, "%.2e", rel);
    ::testing::Test::RecordProperty(name + "_rel", text);
  }
};

/// FD of `loss(layers)` in every weight, recurrent weight, bias, alpha, the model-specific
/// parameters (alpha_syn, rho, b, a) and, where the layer has per-neuron thresholds, theta1 against
/// `g` (shared thresholds are a float config.theta1).
void expect_parameter_fd(std::vector<ref::Layer> layers, const ref::Gradients& g,
                         const std::function<double(const std::vector<ref::Layer>&)>& loss,
                         double eps, double tol) {
  const char* names[9] = {"weight",    "weight_rec", "bias", "alpha", "theta1",
                          "alpha_syn", "rho",        "b",    "a"};
  FdWorst worst[9];
  for (size_t l = 0; l < layers.size(); ++l) {
    std::vector<double>* params[9] = {
        &layers[l].weight, &layers[l].weight_rec, &layers[l].bias,
        &layers[l].alpha,  &layers[l].theta1,     &layers[l].alpha_syn,
        &layers[l].rho,    &layers[l].b,          &layers[l].a};
    const std::vector<double>* grads[9] = {&g.weight[l], &g.weight_rec[l], &g.bias[l],
                                           &g.alpha[l],  &g.theta1[l],     &g.alpha_syn[l],
                                           &g.rho[l],    &g.b[l],          &g.a[l]};
    const bool spiking = layers[l].config.kind != LayerKind::readout;
    ASSERT_EQ(g.theta1[l].size(), spiking ? static_cast<size_t>(layers[l].config.n_out) : 0u)
        << "theta1 of layer " << l;
    for (int p = 0; p < 9; ++p) {
      if (p == 4 && params[p]->empty()) continue;
      ASSERT_EQ(grads[p]->size(), params[p]->size()) << names[p] << " of layer " << l;
      for (size_t i = 0; i < params[p]->size(); ++i) {
        const double fd = central_difference([&] { return loss(layers); }, (*params[p])[i], eps);
        EXPECT_NEAR((*grads[p])[i], fd, tol * (1.0 + std::fabs(fd)))
            << names[p] << " of layer " << l << " index " << i;
        worst[p].add((*grads[p])[i], fd);
      }
    }
  }
  for (int p = 0; p < 9; ++p) worst[p].record(names[p]);
}

/// Per-neuron thresholds U(lo, hi) for every spiking layer, neuron 0's set to `first`.
void random_thresholds(std::vector<ref::Layer>& layers, std::mt19937& rng, double lo, double hi,
                       double first) {
  for (ref::Layer& l : layers) {
    if (l.config.kind == LayerKind::readout) continue;
    l.theta1 = random_vector(l.config.n_out, rng, lo, hi);
    l.theta1[0] = first;
  }
}

/// Sum of the magnitudes of a gradient vector.
double mass(const std::vector<double>& g) {
  double s = 0.0;
  for (double x : g) s += std::fabs(x);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Surrogates

TEST(ReferenceSurrogate, HandValues) {
  const double pi = 3.14159265358979323846;
  EXPECT_DOUBLE_EQ(rd::surrogate_grad(Surrogate::super_spike, 0.0, 10.0), 1.0);
  EXPECT_DOUBLE_EQ(rd::surrogate_grad(Surrogate::super_spike, 0.1, 10.0), 0.25);
  EXPECT_DOUBLE_EQ(rd::surrogate_grad(Surrogate::super_spike, -0.1, 10.0), 0.25);
  EXPECT_DOUBLE_EQ(rd::surrogate_grad(Surrogate::arctan, 0.0, 2.0), 1.0);
  EXPECT_DOUBLE_EQ(rd::surrogate_grad(Surrogate::arctan, 1.0 / pi, 2.0), 0.5);
  EXPECT_DOUBLE_EQ(rd::surrogate_grad(Surrogate::triangle, 0.05, 10.0), 0.5);
  EXPECT_DOUBLE_EQ(rd::surrogate_grad(Surrogate::triangle, -0.05, 10.0), 0.5);
  EXPECT_DOUBLE_EQ(rd::surrogate_grad(Surrogate::triangle, 0.2, 10.0), 0.0);
  EXPECT_DOUBLE_EQ(rd::surrogate_grad(Surrogate::sigmoid, 0.0, 4.0), 1.0);
  EXPECT_NEAR(rd::surrogate_grad(Surrogate::sigmoid, std::log(3.0) / 4.0, 4.0), 0.75, 1e-15);
}

TEST(ReferenceSurrogate, SmoothStepDerivativeIsTheSurrogate) {
  for (Surrogate kind :
       {Surrogate::super_spike, Surrogate::arctan, Surrogate::triangle, Surrogate::sigmoid})
    for (int i = 0; i < 24; ++i) {  // x from -0.73 to 0.7075 in steps of 1/16
      const double x = -0.73 + 0.0625 * i;
      double y = x;
      const double fd =
          central_difference([&] { return rd::surrogate_step(kind, y, 3.0); }, y, 1e-6);
      EXPECT_NEAR(fd, rd::surrogate_grad(kind, x, 3.0), 1e-8) << static_cast<int>(kind) << " " << x;
    }
}

// ---------------------------------------------------------------------------------------------
// Forward, by hand. gain = 10 and alpha = 0.5 everywhere, so g (1 - alpha) = 5.

TEST(ReferenceForward, StateResetAndCandidates) {
  // V0 = 1.5 every step (reset each time: without it V0[1] would be 2.25);
  // V1 = 0.5, 0.75, 0.875: a candidate (theta2 = 0.7) from t = 1.
  LayerConfig c = layer_config(LayerKind::lif, 1, 2, 2);
  c.theta2 = 0.7f;
  const std::vector<ref::Layer> layers = {make_layer(c, {0.3, 0.1}, {0.5, 0.5})};
  const SpikeTensor in = make_lists(3, 1, 1, 1, {{{0}, {}}, {{0}, {}}, {{0}, {}}});
  const ref::Forward f = ref::forward(stack_config(layers), layers, in.view());
  const std::vector<double> v = {1.5, 0.5, 1.5, 0.75, 1.5, 0.875};
  ASSERT_EQ(f.membrane.size(), 1u);
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(f.membrane[0][i], v[i], 1e-12) << i;
  ASSERT_EQ(f.spikes.size(), 1u);
  const SpikeTensor& s = f.spikes[0];
  EXPECT_EQ(s.K(), 2);
  EXPECT_EQ(listed_ids(s, 0, 0), (std::vector<int32_t>{0}));
  EXPECT_EQ(s.view().list(0, 0)[1], -1);
  EXPECT_EQ(listed_ids(s, 1, 0), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(listed_ids(s, 2, 0), (std::vector<int32_t>{0, 1}));
  for (int t = 0; t < 3; ++t) EXPECT_EQ(n_spk(s, t, 0), 1);
  EXPECT_EQ(f.dropped, (std::vector<int64_t>{0}));
  EXPECT_TRUE(f.readout.empty());
}

TEST(ReferenceForward, ResetModesDifferWhenASpikeIsDropped) {
  // K = 1; V = [1.5, 1.25] at t = 0, both above threshold, neuron 1's spike dropped.
  // state reset: both reset -> [1.5, 1.25]; spike reset: only 0 -> [1.5, 0.625 + 1.25].
  for (ResetMode mode : {ResetMode::state, ResetMode::spike}) {
    LayerConfig c = layer_config(LayerKind::lif, 1, 2, 1);
    c.reset = mode;
    const std::vector<ref::Layer> layers = {make_layer(c, {0.3, 0.25}, {0.5, 0.5})};
    const SpikeTensor in = make_lists(2, 1, 1, 1, {{{0}, {}}, {{0}, {}}});
    const ref::Forward f = ref::forward(stack_config(layers), layers, in.view());
    const double v11 = mode == ResetMode::state ? 1.25 : 1.875;
    EXPECT_NEAR(f.membrane[0][0], 1.5, 1e-12);
    EXPECT_NEAR(f.membrane[0][1], 1.25, 1e-12);
    EXPECT_NEAR(f.membrane[0][2], 1.5, 1e-12);
    EXPECT_NEAR(f.membrane[0][3], v11, 1e-12);
    EXPECT_EQ(listed_ids(f.spikes[0], 0, 0), (std::vector<int32_t>{0}));
    EXPECT_EQ(listed_ids(f.spikes[0], 1, 0), (std::vector<int32_t>{0}));
    EXPECT_EQ(f.dropped, (std::vector<int64_t>{2}));
    EXPECT_EQ(f.spikes[0].dropped(), 2);
  }
}

TEST(ReferenceForward, CapacityOverflowAndCandidateOrder) {
  // V = [0.95, 1.2, 0.5, 1.1, 0.85], theta2 = 0.8: spikes {1, 3}, candidates {0, 4}.
  struct Case {
    Mode mode;
    int capacity;
    std::vector<int32_t> ids;
    int n_spk;
    int64_t dropped;
  };
  const std::vector<Case> cases = {{Mode::sparse, 1, {1}, 1, 1},
                                   {Mode::sparse, 2, {1, 3}, 2, 0},
                                   {Mode::sparse, 3, {1, 3, 0}, 2, 0},
                                   {Mode::sparse, 4, {1, 3, 0, 4}, 2, 0},
                                   {Mode::dense, 1, {1, 3, 0, 4}, 2, 0}};
  for (const Case& k : cases) {
    LayerConfig c = layer_config(LayerKind::lif, 1, 5, k.capacity);
    c.theta2 = 0.8f;
    const std::vector<ref::Layer> layers = {
        make_layer(c, {0.19, 0.24, 0.1, 0.22, 0.17}, std::vector<double>(5, 0.5))};
    const SpikeTensor in = make_lists(1, 1, 1, 1, {{{0}, {}}});
    const ref::Forward f =
        ref::forward(stack_config(layers, Coupling::same_step, k.mode), layers, in.view());
    const SpikeTensor& s = f.spikes[0];
    EXPECT_EQ(s.K(), k.mode == Mode::dense ? 5 : k.capacity);
    EXPECT_EQ(listed_ids(s, 0, 0), k.ids) << "capacity " << k.capacity;
    EXPECT_EQ(n_spk(s, 0, 0), k.n_spk) << "capacity " << k.capacity;
    EXPECT_EQ(f.dropped[0], k.dropped) << "capacity " << k.capacity;
    for (int i = static_cast<int>(k.ids.size()); i < s.K(); ++i)
      EXPECT_EQ(s.view().list(0, 0)[i], -1);
  }
}

TEST(ReferenceForward, SameStepAndDelayedCoupling) {
  // lif (W 0.3) -> lif (W 0.4) -> readout (W 0.1), one input spike at t = 0, T = 3.
  // same_step: L0 V [1.5, 0, 0]; L1 V [2, 0, 0]; readout [0.5, 0.25, 0.125].
  // delayed:   L0 V [1.5, 0, 0]; L1 V [0, 2, 0]; readout [0, 0, 0.5].
  const std::vector<ref::Layer> layers = {
      make_layer(layer_config(LayerKind::lif, 1, 1, 1), {0.3}, {0.5}),
      make_layer(layer_config(LayerKind::lif, 1, 1, 1), {0.4}, {0.5}),
      make_layer(layer_config(LayerKind::readout, 1, 1), {0.1}, {0.5})};
  const SpikeTensor in = make_lists(3, 1, 1, 1, {{{0}, {}}, {}, {}});
  struct Case {
    Coupling coupling;
    std::vector<double> v1, readout;
  };
  for (const Case& k : {Case{Coupling::same_step, {2, 0, 0}, {0.5, 0.25, 0.125}},
                        Case{Coupling::delayed, {0, 2, 0}, {0, 0, 0.5}}}) {
    const ref::Forward f = ref::forward(stack_config(layers, k.coupling), layers, in.view());
    ASSERT_EQ(f.membrane.size(), 3u);
    ASSERT_EQ(f.spikes.size(), 2u);
    for (int t = 0; t < 3; ++t) {
      EXPECT_NEAR(f.membrane[0][t], t == 0 ? 1.5 : 0.0, 1e-12);
      EXPECT_NEAR(f.membrane[1][t], k.v1[t], 1e-12);
      EXPECT_NEAR(f.readout[t], k.readout[t], 1e-12);
      EXPECT_EQ(f.membrane[2][t], f.readout[t]);
      EXPECT_EQ(n_spk(f.spikes[1], t, 0), k.v1[t] > 1 ? 1 : 0);
    }
  }
}

TEST(ReferenceForward, RecurrenceAndBias) {
  // W = [0.3, 0], W_rec[0][1] = 0.2, bias = [0, 0.01], theta2 = 0.9, input spike at t = 0.
  // t0: I [0.3, 0.01] V [1.5, 0.05] S {0};  t1: I [0, 0.21] V [0, 1.075] S {1};
  // t2: I [0, 0.01] V [0, 0.05] (neuron 1 reset) S {}.
  LayerConfig c = layer_config(LayerKind::recurrent_lif, 1, 2, 2, true);
  const std::vector<ref::Layer> layers = {
      make_layer(c, {0.3, 0.0}, {0.5, 0.5}, {0.0, 0.2, 0.0, 0.0}, {0.0, 0.01})};
  const SpikeTensor in = make_lists(3, 1, 1, 1, {{{0}, {}}, {}, {}});
  const ref::Forward f = ref::forward(stack_config(layers), layers, in.view());
  const std::vector<double> v = {1.5, 0.05, 0.0, 1.075, 0.0, 0.05};
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(f.membrane[0][i], v[i], 1e-12) << i;
  EXPECT_EQ(listed_ids(f.spikes[0], 0, 0), (std::vector<int32_t>{0}));
  EXPECT_EQ(listed_ids(f.spikes[0], 1, 0), (std::vector<int32_t>{1}));
  EXPECT_EQ(listed_ids(f.spikes[0], 2, 0), (std::vector<int32_t>{}));
}

TEST(ReferenceForward, ReadoutIgnoresCandidates) {
  // W = [1, 2]; input t0: spike 0, candidate 1 -> V = [5, 2.5].
  const std::vector<ref::Layer> layers = {
      make_layer(layer_config(LayerKind::readout, 2, 1), {1.0, 2.0}, {0.5})};
  const SpikeTensor in = make_lists(2, 1, 2, 2, {{{0}, {1}}, {}});
  const ref::Forward f = ref::forward(stack_config(layers), layers, in.view());
  EXPECT_TRUE(f.spikes.empty());
  ASSERT_EQ(f.readout.size(), 2u);
  EXPECT_NEAR(f.readout[0], 5.0, 1e-12);
  EXPECT_NEAR(f.readout[1], 2.5, 1e-12);
}

TEST(ReferenceForward, PerNeuronThresholds) {
  // theta1 = [0.4, 1, 2, 0.3], theta2 = 0.5, W = [0.09, 0.16, 0.2, 0.05], input spike every step.
  // t0: V [0.45, 0.8, 1, 0.25]     S {0} + {1, 2}  (0 spikes below theta2: no candidate band)
  // t1: V [0.45, 1.2, 1.5, 0.375]  S {0, 1, 3} + {2} (0 reset by its own theta1; 3 spikes at 0.375)
  // t2: V [0.45, 0.8, 1.75, 0.25]  S {0} + {1, 2}  (1 and 3 reset; 2 not: 1.5 <= its 2)
  LayerConfig c = layer_config(LayerKind::lif, 1, 4, 4);
  c.theta2 = 0.5f;
  ref::Layer layer = make_layer(c, {0.09, 0.16, 0.2, 0.05}, std::vector<double>(4, 0.5));
  layer.theta1 = {0.4, 1.0, 2.0, 0.3};
  const std::vector<ref::Layer> layers = {layer};
  const SpikeTensor in = make_lists(3, 1, 1, 1, {{{0}, {}}, {{0}, {}}, {{0}, {}}});
  const ref::Forward f = ref::forward(stack_config(layers), layers, in.view());
  const std::vector<double> v = {0.45, 0.8,   1.0,  0.25, 0.45, 1.2,
                                 1.5,  0.375, 0.45, 0.8,  1.75, 0.25};
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(f.membrane[0][i], v[i], 1e-12) << i;
  const SpikeTensor& s = f.spikes[0];
  EXPECT_EQ(listed_ids(s, 0, 0), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(n_spk(s, 0, 0), 1);
  EXPECT_EQ(listed_ids(s, 1, 0), (std::vector<int32_t>{0, 1, 3, 2}));
  EXPECT_EQ(n_spk(s, 1, 0), 3);
  EXPECT_EQ(listed_ids(s, 2, 0), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(n_spk(s, 2, 0), 1);
  EXPECT_EQ(f.dropped, (std::vector<int64_t>{0}));
}

TEST(ReferenceForward, SubtractResetFollowsTheMembrane) {
  // theta1 = [1, 1.2], W = [0.3, 0.3] (5 W = 1.5 per step), input spike every step:
  // neuron 0: V [1.5, 0.75 - 1 + 1.5 = 1.25, 0.625 - 1 + 1.5 = 1.125], a spike each step;
  // neuron 1: V [1.5, 0.75 - 1.2 + 1.5 = 1.05 (candidate, no reset next), 0.525 + 1.5 = 2.025].
  // K = 1 drops neuron 1's spikes (t0, t2) and candidate (t1): the membranes are the same.
  for (int capacity : {2, 1}) {
    LayerConfig c = layer_config(LayerKind::lif, 1, 2, capacity);
    c.reset = ResetMode::subtract;
    ref::Layer layer = make_layer(c, {0.3, 0.3}, {0.5, 0.5});
    layer.theta1 = {1.0, 1.2};
    const std::vector<ref::Layer> layers = {layer};
    const SpikeTensor in = make_lists(3, 1, 1, 1, {{{0}, {}}, {{0}, {}}, {{0}, {}}});
    const ref::Forward f = ref::forward(stack_config(layers), layers, in.view());
    const std::vector<double> v = {1.5, 1.5, 1.25, 1.05, 1.125, 2.025};
    for (size_t i = 0; i < v.size(); ++i)
      EXPECT_NEAR(f.membrane[0][i], v[i], 1e-12) << "capacity " << capacity << " " << i;
    const SpikeTensor& s = f.spikes[0];
    if (capacity == 2) {
      EXPECT_EQ(listed_ids(s, 0, 0), (std::vector<int32_t>{0, 1}));
      EXPECT_EQ(n_spk(s, 0, 0), 2);
      EXPECT_EQ(listed_ids(s, 1, 0), (std::vector<int32_t>{0, 1}));
      EXPECT_EQ(n_spk(s, 1, 0), 1);
      EXPECT_EQ(listed_ids(s, 2, 0), (std::vector<int32_t>{0, 1}));
      EXPECT_EQ(n_spk(s, 2, 0), 2);
      EXPECT_EQ(f.dropped, (std::vector<int64_t>{0}));
    } else {
      for (int t = 0; t < 3; ++t) EXPECT_EQ(listed_ids(s, t, 0), (std::vector<int32_t>{0}));
      EXPECT_EQ(f.dropped, (std::vector<int64_t>{2}));
      EXPECT_EQ(f.dropped_candidates, (std::vector<int64_t>{1}));
    }
  }
}

TEST(ReferenceForward, EmptyThresholdsMeanConfigTheta1) {
  // theta1 = {} and theta1 = config.theta1 for every neuron give the same forward and backward.
  const int T = 6, B = 2, N0 = 5;
  for (ResetMode mode : {ResetMode::state, ResetMode::spike, ResetMode::subtract}) {
    std::mt19937 rng(31);
    std::vector<LayerConfig> configs = {layer_config(LayerKind::lif, N0, 6, 3, true),
                                        layer_config(LayerKind::recurrent_lif, 6, 4, 3),
                                        layer_config(LayerKind::readout, 4, 2)};
    for (LayerConfig& c : configs) {
      c.reset = mode;
      c.theta1 = 0.8f;
      c.theta2 = 0.6f;
    }
    const std::vector<ref::Layer> shared = random_stack(configs, rng, -0.3, 0.6, 0.1);
    std::vector<ref::Layer> explicit_theta = shared;
    for (int l = 0; l < 2; ++l) explicit_theta[l].theta1.assign(configs[l].n_out, 0.8f);
    const StackConfig sc = stack_config(shared);
    const SpikeTensor in = random_lists(T, B, 3, N0, rng, true);
    const ref::Forward a = ref::forward(sc, shared, in.view());
    const ref::Forward b = ref::forward(sc, explicit_theta, in.view());
    ASSERT_GT(a.spikes[0].total_spikes(), 0);
    EXPECT_EQ(a.membrane, b.membrane);
    for (int l = 0; l < 2; ++l)
      for (int t = 0; t < T; ++t)
        for (int bb = 0; bb < B; ++bb) {
          EXPECT_EQ(listed_ids(a.spikes[l], t, bb), listed_ids(b.spikes[l], t, bb));
          EXPECT_EQ(n_spk(a.spikes[l], t, bb), n_spk(b.spikes[l], t, bb));
        }
    const std::vector<std::vector<double>> grad_out = {random_vector(T * B * 3, rng),
                                                       random_vector(T * B * 3, rng),
                                                       random_vector(T * B * 2, rng)};
    const ref::Gradients ga = ref::backward(sc, shared, in.view(), a, grad_out);
    const ref::Gradients gb = ref::backward(sc, explicit_theta, in.view(), b, grad_out);
    EXPECT_EQ(ga.weight, gb.weight);
    EXPECT_EQ(ga.weight_rec, gb.weight_rec);
    EXPECT_EQ(ga.bias, gb.bias);
    EXPECT_EQ(ga.alpha, gb.alpha);
    EXPECT_EQ(ga.theta1, gb.theta1);
    EXPECT_EQ(ga.input, gb.input);
    EXPECT_GT(mass(ga.theta1[0]), 0.0);
    EXPECT_TRUE(ga.theta1[2].empty());
  }
}

TEST(ReferenceForward, RejectsBadThresholds) {
  const SpikeTensor in = make_lists(1, 1, 1, 1, {{{0}, {}}});
  auto run = [&](const std::vector<ref::Layer>& layers) {
    ref::forward(stack_config(layers), layers, in.view());
  };
  ref::Layer lif = make_layer(layer_config(LayerKind::lif, 1, 2, 2), {0.3, 0.3}, {0.5, 0.5});
  ref::Layer readout = make_layer(layer_config(LayerKind::readout, 2, 1), {1.0, 1.0}, {0.5});
  EXPECT_NO_THROW(run({lif, readout}));
  lif.theta1 = {1.0};  // wrong size
  EXPECT_THROW(run({lif, readout}), std::invalid_argument);
  lif.theta1 = {1.0, std::nan("")};
  EXPECT_THROW(run({lif, readout}), std::invalid_argument);
  lif.theta1 = {0.1, 2.0};  // below theta2 is allowed
  EXPECT_NO_THROW(run({lif, readout}));
  readout.theta1 = {1.0};  // a readout has no threshold
  EXPECT_THROW(run({lif, readout}), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Backward, by hand.

TEST(ReferenceBackward, LifHandPassAndMask) {
  // One neuron, input spike at t = 0, 1: V = [1.5, 1.5] (state reset), both steps listed.
  // Entry grads [1, 2], sigma'(0.5) = 1/36 (SuperSpike, beta 10). gV1 = 2/36, gI1 = 10/36.
  // pass: gV0 = 0.5 gV1 + 1/36 = 2/36 -> dW = 20/36, dIn = 0.3 gI = [1/12, 1/12].
  // mask: r[1] = 1 -> gV0 = 1/36 -> dW = 15/36, dIn = [1/24, 1/12].
  // dalpha = gV0 (0 - g I) + gV1 (V0 (1 - r1) - g I), g I = 3: -3 (gV0 + gV1) = -1/3 | -1/4.
  // dtheta1 = -(1 + 2) / 36 = -1/12 (no subtract term).
  for (ResetMode mode : {ResetMode::state, ResetMode::spike})
    for (ResetGrad rg : {ResetGrad::pass, ResetGrad::mask}) {
      LayerConfig c = layer_config(LayerKind::lif, 1, 1, 1);
      c.reset = mode;
      c.reset_grad = rg;
      const std::vector<ref::Layer> layers = {make_layer(c, {0.3}, {0.5})};
      const SpikeTensor in = make_lists(2, 1, 1, 1, {{{0}, {}}, {{0}, {}}});
      const StackConfig sc = stack_config(layers);
      const ref::Forward f = ref::forward(sc, layers, in.view());
      const ref::Gradients g = ref::backward(sc, layers, in.view(), f, {{1.0, 2.0}});
      const bool pass = rg == ResetGrad::pass;
      EXPECT_NEAR(g.weight[0][0], pass ? 20.0 / 36 : 15.0 / 36, 1e-14);
      EXPECT_NEAR(g.input[0], pass ? 1.0 / 12 : 1.0 / 24, 1e-14);
      EXPECT_NEAR(g.input[1], 1.0 / 12, 1e-14);
      EXPECT_NEAR(g.alpha[0][0], pass ? -1.0 / 3 : -0.25, 1e-14);
      EXPECT_NEAR(g.theta1[0][0], -1.0 / 12, 1e-14);
      EXPECT_TRUE(g.weight_rec[0].empty());
      EXPECT_TRUE(g.bias[0].empty());
    }
}

TEST(ReferenceBackward, SubtractHandIgnoresResetGrad) {
  // One neuron, input spike at t = 0, 1: V = [1.5, 0.75 - 1 + 1.5 = 1.25], r1 = 1, both spikes.
  // Entry grads [1, 2]; sigma'(0.5) = 1/36, sigma'(0.25) = 4/49 (SuperSpike, beta 10).
  // gV1 = 8/49; gV0 = 0.5 gV1 + 1/36 = 4/49 + 1/36 (carry alpha for pass and mask alike).
  // dW = 5 (gV0 + gV1) = 60/49 + 5/36; dIn = 0.3 * 5 gV = [6/49 + 1/24, 12/49].
  // dalpha = gV0 (0 - 3) + gV1 (1.5 - 3) = -24/49 - 1/12.
  // dtheta1 = -(1/36 + 2 * 4/49) - gV1 r1 = -1/36 - 16/49.
  for (ResetGrad rg : {ResetGrad::pass, ResetGrad::mask}) {
    LayerConfig c = layer_config(LayerKind::lif, 1, 1, 1);
    c.reset = ResetMode::subtract;
    c.reset_grad = rg;
    const std::vector<ref::Layer> layers = {make_layer(c, {0.3}, {0.5})};
    const SpikeTensor in = make_lists(2, 1, 1, 1, {{{0}, {}}, {{0}, {}}});
    const StackConfig sc = stack_config(layers);
    const ref::Forward f = ref::forward(sc, layers, in.view());
    EXPECT_NEAR(f.membrane[0][1], 1.25, 1e-14);
    const ref::Gradients g = ref::backward(sc, layers, in.view(), f, {{1.0, 2.0}});
    EXPECT_NEAR(g.weight[0][0], 60.0 / 49 + 5.0 / 36, 1e-14);
    EXPECT_NEAR(g.input[0], 6.0 / 49 + 1.0 / 24, 1e-14);
    EXPECT_NEAR(g.input[1], 12.0 / 49, 1e-14);
    EXPECT_NEAR(g.alpha[0][0], -24.0 / 49 - 1.0 / 12, 1e-14);
    EXPECT_NEAR(g.theta1[0][0], -1.0 / 36 - 16.0 / 49, 1e-14);
  }
}

TEST(ReferenceBackward, ReadoutHandCandidateGetsEntryGradientOnly) {
  // W = [1, 2], bias, input t0: spike 0 + candidate 1, t1: empty. dL/dV = [1, 1]:
  // gV = [1.5, 1], gI = [7.5, 5]; dW = [7.5, 0] (candidates carry no current); dbias = 12.5;
  // entry grads t0 = [W0 gI0, W1 gI0] = [7.5, 15], t1 = [0, 0].
  // V = [5, 2.5], g I = [10, 0]: dalpha = 1.5 (0 - 10) + 1 (5 - 0) = -10; no theta1.
  const std::vector<ref::Layer> layers = {
      make_layer(layer_config(LayerKind::readout, 2, 1, 0, true), {1.0, 2.0}, {0.5}, {}, {0.0})};
  const SpikeTensor in = make_lists(2, 1, 2, 2, {{{0}, {1}}, {}});
  const StackConfig sc = stack_config(layers);
  const ref::Forward f = ref::forward(sc, layers, in.view());
  const ref::Gradients g = ref::backward(sc, layers, in.view(), f, {{1.0, 1.0}});
  EXPECT_NEAR(g.weight[0][0], 7.5, 1e-12);
  EXPECT_EQ(g.weight[0][1], 0.0);
  EXPECT_NEAR(g.bias[0][0], 12.5, 1e-12);
  ASSERT_EQ(g.input.size(), 4u);
  EXPECT_NEAR(g.input[0], 7.5, 1e-12);
  EXPECT_NEAR(g.input[1], 15.0, 1e-12);
  EXPECT_EQ(g.input[2], 0.0);
  EXPECT_EQ(g.input[3], 0.0);
  EXPECT_NEAR(g.alpha[0][0], -10.0, 1e-12);
  EXPECT_TRUE(g.theta1[0].empty());
}

TEST(ReferenceBackward, NothingListedMeansNoSurrogateGradient) {
  // The hidden layer never reaches theta2, so its lists are empty: whatever arrives from above
  // or on its (padding) entries, its weights and the input get exactly zero gradient.
  std::mt19937 rng(7);
  std::vector<ref::Layer> layers = random_stack(
      {layer_config(LayerKind::lif, 4, 5, 3), layer_config(LayerKind::readout, 5, 2, 0, true)}, rng,
      0.0, 0.01, 0.5);
  const SpikeTensor in = random_lists(4, 2, 3, 4, rng, true);
  const StackConfig sc = stack_config(layers);
  const ref::Forward f = ref::forward(sc, layers, in.view());
  for (double v : f.membrane[0]) ASSERT_LT(v, 0.9);
  const ref::Gradients g =
      ref::backward(sc, layers, in.view(), f,
                    {std::vector<double>(4 * 2 * 3, 1.0), random_vector(4 * 2 * 2, rng)});
  for (double x : g.weight[0]) EXPECT_EQ(x, 0.0);
  for (double x : g.input) EXPECT_EQ(x, 0.0);
  for (double x : g.weight[1]) EXPECT_EQ(x, 0.0);  // no spikes reach the readout
  EXPECT_NE(g.bias[1][0], 0.0);
}

TEST(ReferenceBackward, PassAndMaskDifferOnlyThroughResets) {
  std::mt19937 rng(3);
  std::vector<ref::Layer> layers =
      random_stack({layer_config(LayerKind::lif, 5, 6, 6)}, rng, -0.2, 0.8, 0.0);
  const SpikeTensor in = random_lists(6, 2, 4, 5, rng, false);
  std::vector<ref::Gradients> g;
  for (ResetGrad rg : {ResetGrad::pass, ResetGrad::mask}) {
    layers[0].config.reset_grad = rg;
    const StackConfig sc = stack_config(layers);
    const ref::Forward f = ref::forward(sc, layers, in.view());
    ASSERT_GT(f.spikes[0].total_spikes(), 0);
    g.push_back(ref::backward(sc, layers, in.view(), f, {std::vector<double>(6 * 2 * 6, 1.0)}));
  }
  double diff = 0.0;
  for (size_t i = 0; i < g[0].weight[0].size(); ++i)
    diff += std::fabs(g[0].weight[0][i] - g[1].weight[0][i]);
  EXPECT_GT(diff, 1e-3);
}

// ---------------------------------------------------------------------------------------------
// Finite differences through the smooth test forward: checks the BPTT recursion, the pass / mask
// carry, the subtract reset, recurrence, delayed coupling, bias, the readout, the input gradient
// and the alpha and (per-neuron thresholds) theta1 gradients. A spike reset is the state reset
// here (smooth decides resets by the membrane), so the linearized suite covers it.

using kernels::neurons::Neuron;
using SmoothCase = std::tuple<Coupling, ResetMode, ResetGrad, Surrogate, bool, Neuron>;
class ReferenceSmoothFd : public ::testing::TestWithParam<SmoothCase> {};

TEST_P(ReferenceSmoothFd, BackwardMatchesFiniteDifferences) {
  const auto [coupling, reset_mode, reset_grad, surrogate, per_neuron_theta1, neuron] = GetParam();
  if ((neuron == Neuron::alif || neuron == Neuron::adlif) && reset_mode == ResetMode::subtract)
    GTEST_SKIP() << "the adaptive models have no subtract reset (the op layer refuses it)";
  const int T = 6, B = 2;
  std::vector<LayerConfig> configs = {layer_config(LayerKind::lif, 4, 6, 6, true),
                                      layer_config(LayerKind::recurrent_lif, 6, 5, 5, true),
                                      layer_config(LayerKind::readout, 5, 3, 0, true)};
  for (LayerConfig& c : configs) {
    c.reset = reset_mode;
    c.reset_grad = reset_grad;
    c.surrogate = surrogate;
    c.beta = 3.0f;
    if (c.kind != LayerKind::readout) c.neuron = neuron;
    // the adaptation current takes from the drive: more gain so that resets happen
    if (c.kind != LayerKind::readout && neuron == Neuron::adlif) c.gain = 16.0f;
  }
  std::mt19937 rng(11);
  std::vector<ref::Layer> layers = random_stack(configs, rng, -0.2, 0.6, 0.2);
  if (per_neuron_theta1) random_thresholds(layers, rng, 0.7, 1.3, 0.6);
  const StackConfig sc = stack_config(layers, coupling);
  std::vector<double> input = random_vector(T * B * 4, rng, 0.0, 1.0);
  const rd::Trace base = rd::trace_forward(sc, layers, T, B, input, rd::Activation::smooth);
  // Resets must happen (and not everywhere) for pass and mask to matter.
  for (int l = 0; l < 2; ++l) {
    double resets = 0.0;
    for (double r : base.reset[l]) resets += r;
    ASSERT_GT(resets, 0.0) << "layer " << l;
    ASSERT_LT(resets, static_cast<double>(T - 1) * B * configs[l].n_out) << "layer " << l;
  }
  std::vector<std::vector<double>> w;
  w.reserve(configs.size());
  for (const LayerConfig& c : configs) w.push_back(random_vector(T * B * c.n_out, rng));
  auto loss = [&](const std::vector<ref::Layer>& ls, const std::vector<double>& x) {
    const rd::Trace tr = rd::trace_forward(sc, ls, T, B, x, rd::Activation::smooth, &base);
    return dot(w[0], tr.act[0]) + dot(w[1], tr.act[1]) + dot(w[2], tr.out.readout);
  };
  EXPECT_NEAR(loss(layers, input),
              dot(w[0], base.act[0]) + dot(w[1], base.act[1]) + dot(w[2], base.out.readout), 1e-12);
  const ref::Gradients g = rd::trace_backward(sc, layers, input, base, w);
  const double eps = 1e-6, tol = 1e-6;
  expect_parameter_fd(
      layers, g, [&](const std::vector<ref::Layer>& ls) { return loss(ls, input); }, eps, tol);
  for (int l = 0; l < 3; ++l) EXPECT_GT(mass(g.alpha[l]), 1e-3) << "layer " << l;
  for (int l = 0; l < 2; ++l) EXPECT_GT(mass(g.theta1[l]), 1e-3) << "layer " << l;
  for (int l = 0; l < 2 && neuron == Neuron::cuba; ++l)
    EXPECT_GT(mass(g.alpha_syn[l]), 1e-3) << "layer " << l;
  for (int l = 0; l < 2 && (neuron == Neuron::alif || neuron == Neuron::adlif); ++l) {
    EXPECT_GT(mass(g.rho[l]), 1e-3) << "layer " << l;
    EXPECT_GT(mass(g.b[l]), 1e-3) << "layer " << l;
    if (neuron == Neuron::adlif) EXPECT_GT(mass(g.a[l]), 1e-3) << "layer " << l;
  }
  ASSERT_EQ(g.input.size(), input.size());
  FdWorst worst;
  for (size_t i = 0; i < input.size(); ++i) {
    const double fd = central_difference([&] { return loss(layers, input); }, input[i], eps);
    EXPECT_NEAR(g.input[i], fd, tol * (1.0 + std::fabs(fd))) << "input " << i;
    worst.add(g.input[i], fd);
  }
  worst.record("input");
}

INSTANTIATE_TEST_SUITE_P(
    All, ReferenceSmoothFd,
    ::testing::Combine(::testing::Values(Coupling::same_step, Coupling::delayed),
                       ::testing::Values(ResetMode::state, ResetMode::subtract),
                       ::testing::Values(ResetGrad::pass, ResetGrad::mask),
                       ::testing::Values(Surrogate::super_spike, Surrogate::arctan,
                                         Surrogate::triangle, Surrogate::sigmoid),
                       ::testing::Bool(),
                       ::testing::Values(Neuron::lif, Neuron::cuba, Neuron::alif, Neuron::adlif)));

// ---------------------------------------------------------------------------------------------
// Finite differences through the linearized forward around the real one: checks the public
// backward itself, with real lists (overflow, candidates, padding entries, masked surrogate), all
// reset modes and, with per-neuron thresholds (neuron 0's below theta2), the theta1 gradients.

using LinearCase = std::tuple<Coupling, ResetMode, ResetGrad, Mode, bool, Neuron>;
class ReferenceLinearizedFd : public ::testing::TestWithParam<LinearCase> {};

TEST_P(ReferenceLinearizedFd, PublicBackwardMatchesFiniteDifferences) {
  const auto [coupling, reset_mode, reset_grad, mode, per_neuron_theta1, neuron] = GetParam();
  if ((neuron == Neuron::alif || neuron == Neuron::adlif) && reset_mode == ResetMode::subtract)
    GTEST_SKIP() << "the adaptive models have no subtract reset (the op layer refuses it)";
  const int T = 8, B = 2, N0 = 6, K0 = 4;
  std::vector<LayerConfig> configs = {layer_config(LayerKind::lif, N0, 8, 3, true),
                                      layer_config(LayerKind::recurrent_lif, 8, 6, 4),
                                      layer_config(LayerKind::readout, 6, 3, 0, true)};
  const Surrogate surrogates[4] = {Surrogate::super_spike, Surrogate::arctan, Surrogate::triangle,
                                   Surrogate::sigmoid};
  const int variant = static_cast<int>(reset_mode) * 2 + static_cast<int>(reset_grad);
  for (LayerConfig& c : configs) {
    c.reset = reset_mode;
    c.reset_grad = reset_grad;
    c.theta2 = 0.5f;
    c.surrogate = surrogates[variant % 4];
    c.beta = c.surrogate == Surrogate::triangle ? 1.0f : 5.0f;
    if (c.kind != LayerKind::readout && neuron != Neuron::lif) c.neuron = neuron;
    if (c.kind != LayerKind::readout && neuron == Neuron::cuba)
      c.gain = 5.0f;  // the synaptic current sums about 1 / (1 - alpha_syn) steps of input
  }
  std::mt19937 rng(23 + variant);
  std::vector<ref::Layer> layers = random_stack(configs, rng, -0.35, 0.55, 0.1);
  if (per_neuron_theta1) random_thresholds(layers, rng, 0.6, 1.4, 0.45);
  const StackConfig sc = stack_config(layers, coupling, mode);
  const SpikeTensor in = random_lists(T, B, K0, N0, rng, true);
  const ref::Forward f = ref::forward(sc, layers, in.view());

  // The case must exercise spikes, candidates and (sparse mode) overflow.
  int64_t dropped = 0;
  for (int l = 0; l < 2; ++l) {
    dropped += f.dropped[l];
    const SpikeView s = f.spikes[l].view();
    int64_t candidates = 0;
    for (int t = 0; t < T; ++t)
      for (int b = 0; b < B; ++b) candidates += s.total(t, b) - s.spikes(t, b);
    ASSERT_GT(f.spikes[l].total_spikes(), 0) << "layer " << l;
    ASSERT_GT(candidates, 0) << "layer " << l;
  }
  if (mode == Mode::sparse)
    ASSERT_GT(dropped, 0);
  else
    ASSERT_EQ(dropped, 0);

  // Entry gradients everywhere, padding included (must be ignored).
  std::vector<std::vector<double>> grad_out = {random_vector(T * B * f.spikes[0].K(), rng),
                                               random_vector(T * B * f.spikes[1].K(), rng),
                                               random_vector(T * B * 3, rng)};
  const ref::Gradients g = ref::backward(sc, layers, in.view(), f, grad_out);

  std::vector<double> x = rd::dense_spikes(in.view());
  const rd::Trace base = rd::trace_forward(sc, layers, T, B, x, rd::Activation::spikes);
  for (int l = 0; l < 3; ++l) ASSERT_EQ(base.out.membrane[l], f.membrane[l]);
  std::vector<std::vector<double>> w(2);  // entry gradients scattered to dense [T, B, N]
  for (int l = 0; l < 2; ++l) {
    const SpikeView s = f.spikes[l].view();
    const int n = configs[l].n_out;
    w[l].assign(T * B * n, 0.0);
    for (int t = 0; t < T; ++t)
      for (int b = 0; b < B; ++b)
        for (int k = 0; k < s.total(t, b); ++k)
          w[l][(t * B + b) * n + s.list(t, b)[k]] = grad_out[l][(t * B + b) * s.K + k];
  }
  auto loss = [&](const std::vector<ref::Layer>& ls, const std::vector<double>& input) {
    const rd::Trace tr = rd::trace_forward(sc, ls, T, B, input, rd::Activation::linearized, &base);
    return dot(w[0], tr.act[0]) + dot(w[1], tr.act[1]) + dot(grad_out[2], tr.out.readout);
  };
  const double eps = 1e-6, tol = 1e-6;
  expect_parameter_fd(
      layers, g, [&](const std::vector<ref::Layer>& ls) { return loss(ls, x); }, eps, tol);
  for (int l = 0; l < 2; ++l) {
    EXPECT_GT(mass(g.weight[l]), 1e-3) << "layer " << l;
    EXPECT_GT(mass(g.alpha[l]), 1e-3) << "layer " << l;
    EXPECT_GT(mass(g.theta1[l]), 1e-3) << "layer " << l;
    if (neuron == Neuron::cuba) EXPECT_GT(mass(g.alpha_syn[l]), 1e-3) << "layer " << l;
    if (neuron == Neuron::alif || neuron == Neuron::adlif) {  // few spikes feed b: 1e-4
      EXPECT_GT(mass(g.rho[l]), 1e-3) << "layer " << l;
      EXPECT_GT(mass(g.b[l]), 1e-4) << "layer " << l;
    }
    if (neuron == Neuron::adlif) EXPECT_GT(mass(g.a[l]), 1e-3) << "layer " << l;
  }

  // Input entries: spikes and candidates by FD of the dense input; padding exactly zero.
  ASSERT_EQ(g.input.size(), static_cast<size_t>(T * B * K0));
  const SpikeView s = in.view();
  FdWorst worst;
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b)
      for (int k = 0; k < K0; ++k) {
        const double got = g.input[(t * B + b) * K0 + k];
        if (k >= s.total(t, b)) {
          EXPECT_EQ(got, 0.0);
          continue;
        }
        double& xi = x[(t * B + b) * N0 + s.list(t, b)[k]];
        const double fd = central_difference([&] { return loss(layers, x); }, xi, eps);
        EXPECT_NEAR(got, fd, tol * (1.0 + std::fabs(fd))) << "t " << t << " b " << b << " k " << k;
        worst.add(got, fd);
      }
  worst.record("input");
}

INSTANTIATE_TEST_SUITE_P(
    All, ReferenceLinearizedFd,
    ::testing::Combine(::testing::Values(Coupling::same_step, Coupling::delayed),
                       ::testing::Values(ResetMode::state, ResetMode::spike, ResetMode::subtract),
                       ::testing::Values(ResetGrad::pass, ResetGrad::mask),
                       ::testing::Values(Mode::sparse, Mode::dense), ::testing::Bool(),
                       ::testing::Values(Neuron::lif, Neuron::cuba, Neuron::alif, Neuron::adlif)));

// ---------------------------------------------------------------------------------------------
// Readouts on fixed spikes: the public forward itself is smooth in the readout's parameters.

TEST(ReferenceReadoutFd, ReadoutOnlyMembraneCrossEntropy) {
  const int T = 5, B = 3, N0 = 6, C = 3;
  std::mt19937 rng(5);
  const std::vector<ref::Layer> layers =
      random_stack({layer_config(LayerKind::readout, N0, C, 0, true)}, rng, -1.0, 1.0, 0.5);
  const StackConfig sc = stack_config(layers);
  const SpikeTensor in = random_lists(T, B, 4, N0, rng, true);
  const std::vector<int32_t> labels = {0, 2, 1};
  std::vector<double> grad;
  const ref::Forward f = ref::forward(sc, layers, in.view());
  ref::membrane_cross_entropy(f.readout, T, B, C, labels, &grad);
  const ref::Gradients g = ref::backward(sc, layers, in.view(), f, {grad});
  expect_parameter_fd(
      layers, g,
      [&](const std::vector<ref::Layer>& ls) {
        return ref::membrane_cross_entropy(ref::forward(sc, ls, in.view()).readout, T, B, C, labels,
                                           nullptr);
      },
      1e-6, 1e-7);
  // Input entries (spikes and candidates) by FD of the dense input activity.
  std::vector<double> x = rd::dense_spikes(in.view());
  const SpikeView s = in.view();
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b)
      for (int k = 0; k < s.total(t, b); ++k) {
        double& xi = x[(t * B + b) * N0 + s.list(t, b)[k]];
        const double fd = central_difference(
            [&] {
              const rd::Trace tr = rd::trace_forward(sc, layers, T, B, x, rd::Activation::spikes);
              return ref::membrane_cross_entropy(tr.out.readout, T, B, C, labels, nullptr);
            },
            xi, 1e-6);
        EXPECT_NEAR(g.input[(t * B + b) * s.K + k], fd, 1e-7 * (1.0 + std::fabs(fd)));
      }
}

TEST(ReferenceReadoutFd, LifThenReadoutReadoutParameters) {
  const int T = 6, B = 2, N0 = 5, C = 3;
  std::mt19937 rng(9);
  std::vector<LayerConfig> configs = {layer_config(LayerKind::lif, N0, 6, 3),
                                      layer_config(LayerKind::readout, 6, C, 0, true)};
  for (Coupling coupling : {Coupling::same_step, Coupling::delayed}) {
    const std::vector<ref::Layer> layers = random_stack(configs, rng, -0.3, 0.8, 0.5);
    const StackConfig sc = stack_config(layers, coupling);
    const SpikeTensor in = random_lists(T, B, 3, N0, rng, false);
    const std::vector<int32_t> labels = {1, 2};
    std::vector<double> grad;
    const ref::Forward f = ref::forward(sc, layers, in.view());
    ASSERT_GT(f.spikes[0].total_spikes(), 0);
    ref::membrane_cross_entropy(f.readout, T, B, C, labels, &grad);
    const ref::Gradients g = ref::backward(sc, layers, in.view(), f, {{}, grad});
    EXPECT_GT(mass(g.weight[0]), 0.0);
    std::vector<ref::Layer> readout_only = layers;  // FD over the readout's parameters only
    auto loss = [&](const std::vector<ref::Layer>& ls) {
      return ref::membrane_cross_entropy(ref::forward(sc, ls, in.view()).readout, T, B, C, labels,
                                         nullptr);
    };
    std::vector<double>* params[3] = {&readout_only[1].weight, &readout_only[1].bias,
                                      &readout_only[1].alpha};
    const std::vector<double>* grads[3] = {&g.weight[1], &g.bias[1], &g.alpha[1]};
    const char* names[3] = {"weight", "bias", "alpha"};
    for (int p = 0; p < 3; ++p) {
      ASSERT_EQ(grads[p]->size(), params[p]->size());
      FdWorst worst;
      for (size_t i = 0; i < params[p]->size(); ++i) {
        const double fd =
            central_difference([&] { return loss(readout_only); }, (*params[p])[i], 1e-6);
        EXPECT_NEAR((*grads[p])[i], fd, 1e-7 * (1.0 + std::fabs(fd))) << names[p] << " " << i;
        worst.add((*grads[p])[i], fd);
      }
      worst.record(std::string("readout_") + names[p] +
                   (coupling == Coupling::delayed ? "_delayed" : ""));
    }
    EXPECT_GT(mass(g.alpha[1]), 1e-3);
  }
}

// ---------------------------------------------------------------------------------------------
// Losses

TEST(ReferenceLosses, MembraneCrossEntropyHandAndStable) {
  std::vector<double> grad;
  EXPECT_NEAR(ref::membrane_cross_entropy({0.0, 0.0}, 1, 1, 2, {0}, &grad), std::log(2.0), 1e-15);
  EXPECT_NEAR(grad[0], -0.5, 1e-15);
  EXPECT_NEAR(grad[1], 0.5, 1e-15);
  const double l = ref::membrane_cross_entropy({1000.0, 0.0, -1000.0}, 1, 1, 3, {1}, &grad);
  EXPECT_NEAR(l, 1000.0, 1e-9);
  EXPECT_NEAR(grad[0], 1.0, 1e-12);
  EXPECT_NEAR(grad[1], -1.0, 1e-12);
  EXPECT_NEAR(grad[2], 0.0, 1e-12);
}

TEST(ReferenceLosses, MembraneCrossEntropyMatchesFiniteDifferences) {
  const int T = 3, B = 2, C = 4;
  std::mt19937 rng(2);
  std::vector<double> v = random_vector(T * B * C, rng, -3.0, 3.0), grad;
  const std::vector<int32_t> labels = {3, 0};
  ref::membrane_cross_entropy(v, T, B, C, labels, &grad);
  for (size_t i = 0; i < v.size(); ++i) {
    const double fd = central_difference(
        [&] { return ref::membrane_cross_entropy(v, T, B, C, labels, nullptr); }, v[i], 1e-6);
    EXPECT_NEAR(grad[i], fd, 1e-8) << i;
  }
}

TEST(ReferenceLosses, SpikeCountCrossEntropyHand) {
  // b0: t0 spikes {0, 2} + candidate 1, t1 spike {2}  -> counts [1, 0, 2], label 2
  // b1: t0 candidate 0, t1 spike {1} + candidate 2      -> counts [0, 1, 0], label 0
  const SpikeTensor s = make_lists(2, 2, 3, 3, {{{0, 2}, {1}}, {{}, {0}}, {{2}, {}}, {{1}, {2}}});
  std::vector<double> grad;
  const double loss = ref::spike_count_cross_entropy(s.view(), {2, 0}, &grad);
  const double lse0 = std::log(std::exp(1.0) + std::exp(0.0) + std::exp(2.0));
  const double lse1 = std::log(std::exp(0.0) + std::exp(1.0) + std::exp(0.0));
  EXPECT_NEAR(loss, 0.5 * ((lse0 - 2.0) + (lse1 - 0.0)), 1e-14);
  auto dc0 = [&](int j) {
    return 0.5 * (std::exp((j == 1 ? 0.0 : j == 0 ? 1.0 : 2.0) - lse0) - (j == 2 ? 1.0 : 0.0));
  };
  auto dc1 = [&](int j) {
    return 0.5 * (std::exp((j == 1 ? 1.0 : 0.0) - lse1) - (j == 0 ? 1.0 : 0.0));
  };
  // grad layout [T, B, K]: (t0, b0), (t0, b1), (t1, b0), (t1, b1).
  const std::vector<double> expected = {dc0(0), dc0(2), dc0(1), dc1(0), 0.0,    0.0,
                                        dc0(2), 0.0,    0.0,    dc1(1), dc1(2), 0.0};
  ASSERT_EQ(grad.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(grad[i], expected[i], 1e-14) << i;
  // Same as the membrane loss over the count logits (T = 1), whose gradient is dL/dc.
  std::vector<double> dc;
  const double as_membrane =
      ref::membrane_cross_entropy({1.0, 0.0, 2.0, 0.0, 1.0, 0.0}, 1, 2, 3, {2, 0}, &dc);
  EXPECT_NEAR(loss, as_membrane, 1e-14);
  EXPECT_NEAR(grad[0], dc[0], 1e-14);
  EXPECT_NEAR(grad[10], dc[5], 1e-14);
}

}  // namespace
