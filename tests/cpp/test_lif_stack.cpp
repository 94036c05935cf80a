// The stack ops on every available device against the double-precision reference, over a shape
// sweep (T = 1, B = 1, zero spikes, full and overflowing lists, N not a multiple of 8); the paper's
// exactness check (sparse with K >= N equals dense); and determinism across thread counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/common/model.hpp"
#include "backends/cpu/cpu_backend.hpp"
#include "backends/cuda/stack.hpp"
#include "emulated_exec.hpp"
#include "saltatory/core/device.hpp"
#include "saltatory/core/error.hpp"
#include "saltatory/core/memory.hpp"
#include "saltatory/ipu/plan.hpp"
#include "saltatory/ops/lif_stack.hpp"
#include "saltatory/reference/reference.hpp"

using namespace saltatory;

namespace {

struct Case {
  std::string name;
  int T, B, n_in;
  std::vector<int> widths;  // hidden widths; a readout of `classes` follows if classes > 0
  int capacity;             // hidden capacity (sparse mode)
  double density = 0.2;     // input spike probability
  int classes = 0;
  bool recurrent = false;
  Coupling coupling = Coupling::same_step;
  ResetMode reset = ResetMode::state;
  ResetGrad reset_grad = ResetGrad::pass;
  bool bias = false;
  Surrogate surrogate = Surrogate::super_spike;
  bool per_neuron_theta1 = false;  // theta1_j ~ U(0.7, 1.1), some below theta2 = 0.9
  // spiking layers' model: cuba with alpha_syn_j ~ U(0.5, 0.85) and gain 4; alif with
  // rho_j ~ U(0.6, 0.95), b_j ~ U(0.1, 0.6)
  kernels::neurons::Neuron neuron = kernels::neurons::Neuron::lif;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

/// A network instance: float parameters for the backend, doubles for the reference.
struct Net {
  StackConfig config;
  std::vector<std::vector<float>> w, w_rec, bias, alpha, theta1;  // theta1 empty: config's
  std::vector<std::vector<float>> alpha_syn, rho, b, a;           // empty: not that model's layer
  std::vector<reference::Layer> ref;
  std::vector<LayerParams> params() const {
    std::vector<LayerParams> p(w.size());
    const auto or_null = [](const std::vector<float>& x) { return x.empty() ? nullptr : x.data(); };
    for (size_t l = 0; l < w.size(); ++l)
      p[l] = {w[l].data(),     or_null(w_rec[l]),  or_null(bias[l]),
              alpha[l].data(), or_null(theta1[l]), or_null(alpha_syn[l]),
              or_null(rho[l]), or_null(b[l]),      or_null(a[l])};
    return p;
  }
};

std::vector<double> to_double(const std::vector<float>& x) { return {x.begin(), x.end()}; }

Net make_net(const Case& c, Mode mode, uint32_t seed) {
  std::mt19937 rng(seed);
  Net net;
  net.config.coupling = c.coupling;
  net.config.mode = mode;
  net.config.overflow = OverflowPolicy::lowest_ids;  // the reference models this policy
  std::vector<int> widths = c.widths;
  if (c.classes > 0) widths.push_back(c.classes);
  int n_in = c.n_in;
  for (size_t l = 0; l < widths.size(); ++l) {
    const bool readout = c.classes > 0 && l + 1 == widths.size();
    LayerConfig layer;
    layer.kind =
        readout ? LayerKind::readout : (c.recurrent ? LayerKind::recurrent_lif : LayerKind::lif);
    layer.n_in = n_in;
    layer.n_out = widths[l];
    layer.capacity = c.capacity;
    layer.reset = c.reset;
    layer.reset_grad = c.reset_grad;
    layer.bias = c.bias;
    layer.surrogate = c.surrogate;
    using kernels::neurons::Neuron;
    const Neuron neuron = readout ? Neuron::lif : c.neuron;
    layer.gain = readout ? 1.0f : (neuron == Neuron::cuba ? 4.0f : 10.0f);
    layer.neuron = neuron;
    const float a = 2.0f * std::sqrt(6.0f / n_in);
    std::uniform_real_distribution<float> u(-a, a), ua(0.8f, 0.97f), ub(-0.05f, 0.1f);
    std::vector<float> w(static_cast<size_t>(n_in) * widths[l]), alpha(widths[l]), rec, bias;
    for (float& x : w) x = u(rng) + 0.001f;
    for (float& x : alpha) x = ua(rng);  // per-neuron alpha
    if (layer.kind == LayerKind::recurrent_lif) {
      const float ar = 0.5f * std::sqrt(6.0f / widths[l]);
      rec.resize(static_cast<size_t>(widths[l]) * widths[l]);
      for (float& x : rec) x = std::uniform_real_distribution<float>(-ar, ar)(rng);
    }
    if (c.bias) {
      bias.resize(widths[l]);
      for (float& x : bias) x = ub(rng);
    }
    std::vector<float> theta1;
    if (c.per_neuron_theta1 && !readout) {
      theta1.resize(widths[l]);
      for (float& x : theta1) x = std::uniform_real_distribution<float>(0.7f, 1.1f)(rng);
    }
    const auto uniform = [&](bool wanted, float lo, float hi) {
      std::vector<float> x(wanted ? widths[l] : 0);
      for (float& y : x) y = std::uniform_real_distribution<float>(lo, hi)(rng);
      return x;
    };
    std::vector<float> alpha_syn = uniform(neuron == Neuron::cuba, 0.5f, 0.85f),
                       rho =
                           uniform(neuron == Neuron::alif || neuron == Neuron::adlif, 0.6f, 0.95f),
                       b = uniform(neuron == Neuron::alif || neuron == Neuron::adlif, 0.1f, 0.6f),
                       adapt_a = uniform(neuron == Neuron::adlif, -0.4f, 0.4f);
    net.config.layers.push_back(layer);
    net.ref.push_back({layer, to_double(w), to_double(rec), to_double(bias), to_double(alpha),
                       to_double(theta1), to_double(alpha_syn), to_double(rho), to_double(b),
                       to_double(adapt_a)});
    net.alpha_syn.push_back(std::move(alpha_syn));
    net.rho.push_back(std::move(rho));
    net.b.push_back(std::move(b));
    net.a.push_back(std::move(adapt_a));
    net.w.push_back(std::move(w));
    net.w_rec.push_back(std::move(rec));
    net.bias.push_back(std::move(bias));
    net.alpha.push_back(std::move(alpha));
    net.theta1.push_back(std::move(theta1));
    n_in = widths[l];
  }
  return net;
}

SpikeTensor make_input(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed + 1000);
  std::bernoulli_distribution spike(c.density);
  std::vector<float> dense(static_cast<size_t>(c.T) * c.B * c.n_in);
  int most = 1;
  for (int r = 0; r < c.T * c.B; ++r) {
    int count = 0;
    for (int j = 0; j < c.n_in; ++j)
      count += (dense[static_cast<size_t>(r) * c.n_in + j] = spike(rng));
    most = std::max(most, count);
  }
  // Capacity = the fullest list, so at least one input list is exactly full.
  return SpikeTensor::from_dense(dense.data(), c.T, c.B, c.n_in, most);
}

/// Random output gradients for every layer (entries or readout membranes).
std::vector<std::vector<float>> make_grad_outputs(const StackContext& ctx, uint32_t seed) {
  std::mt19937 rng(seed + 2000);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<std::vector<float>> g;
  size_t spiking = 0;
  for (const LayerConfig& layer : ctx.config.layers) {
    const int width = layer.kind == LayerKind::readout ? layer.n_out : ctx.spikes[spiking++].K();
    g.emplace_back(static_cast<size_t>(ctx.T) * ctx.B * width);
    for (float& x : g.back()) x = n(rng);
  }
  return g;
}

void expect_close(const std::vector<float>& actual, const std::vector<double>& expected,
                  const std::string& what, double rtol = 2e-4) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double scale = 1e-3;
  for (double x : expected) scale = std::max(scale, std::abs(x));
  for (size_t i = 0; i < actual.size(); ++i)
    ASSERT_NEAR(actual[i], expected[i], rtol * scale) << what << " at " << i;
}

void expect_same_lists(const SpikeTensor& a, const SpikeTensor& b, const std::string& what) {
  ASSERT_EQ(a.T(), b.T());
  ASSERT_EQ(a.B(), b.B());
  for (int t = 0; t < a.T(); ++t)
    for (int bb = 0; bb < a.B(); ++bb) {
      const SpikeView va = a.view(), vb = b.view();
      ASSERT_EQ(va.spikes(t, bb), vb.spikes(t, bb)) << what << " n_spk at t=" << t << " b=" << bb;
      ASSERT_EQ(va.total(t, bb), vb.total(t, bb)) << what << " n_tot at t=" << t << " b=" << bb;
      for (int k = 0; k < va.total(t, bb); ++k)
        ASSERT_EQ(va.list(t, bb)[k], vb.list(t, bb)[k]) << what << " id at t=" << t << " k=" << k;
    }
}

/// Gradients of one backward call, per layer (alpha, theta1 and alpha_syn learnable throughout).
struct Grads {
  std::vector<std::vector<float>> w, w_rec, bias, alpha, theta1, alpha_syn, rho, b, a;
  std::vector<float> input;
};

/// The public op, or another driver's backward with the same signature.
using BackwardFn = void (*)(StackContext&, const std::vector<const float*>&,
                            const std::vector<LayerGrads>&, float*);
void op_backward(StackContext& ctx, const std::vector<const float*>& g_out,
                 const std::vector<LayerGrads>& grads, float* grad_input) {
  lif_stack_backward(ctx, g_out, grads, grad_input);
}

/// With `learn_neurons` false, only the weights, biases and input get gradients.
Grads run_backward(StackContext& ctx, const Net& net, const std::vector<std::vector<float>>& g_out,
                   BackwardFn backward = op_backward, bool learn_neurons = true) {
  Grads g;
  std::vector<LayerGrads> buffers;
  for (size_t l = 0; l < net.w.size(); ++l) {
    const bool readout = net.config.layers[l].kind == LayerKind::readout;
    g.w.emplace_back(net.w[l].size(), 0.0f);
    g.w_rec.emplace_back(net.w_rec[l].size(), 0.0f);
    g.bias.emplace_back(net.bias[l].size(), 0.0f);
    g.alpha.emplace_back(net.alpha[l].size(), 0.0f);
    g.theta1.emplace_back(readout ? 0 : net.alpha[l].size(), 0.0f);
    g.alpha_syn.emplace_back(net.alpha_syn[l].size(), 0.0f);
    g.rho.emplace_back(net.rho[l].size(), 0.0f);
    g.b.emplace_back(net.b[l].size(), 0.0f);
    g.a.emplace_back(net.a[l].size(), 0.0f);
  }
  const auto or_null = [](std::vector<float>& x) { return x.empty() ? nullptr : x.data(); };
  for (size_t l = 0; l < net.w.size(); ++l) {
    buffers.push_back({g.w[l].data(), or_null(g.w_rec[l]), or_null(g.bias[l]), g.alpha[l].data(),
                       or_null(g.theta1[l]), or_null(g.alpha_syn[l]), or_null(g.rho[l]),
                       or_null(g.b[l]), or_null(g.a[l])});
    if (!learn_neurons)
      for (float** p : {&buffers.back().alpha, &buffers.back().theta1, &buffers.back().alpha_syn,
                        &buffers.back().rho, &buffers.back().b, &buffers.back().a})
        *p = nullptr;
  }
  std::vector<const float*> outs;
  outs.reserve(g_out.size());
  for (const auto& x : g_out) outs.push_back(x.data());
  g.input.assign(static_cast<size_t>(ctx.T) * ctx.B * ctx.input_capacity, 0.0f);
  backward(ctx, outs, buffers, g.input.data());
  return g;
}

/// Bit equality of two forwards (lists, drops, readout) and of their backwards' gradients.
void expect_bitwise_same(const StackContext& ctx, const StackContext& ref, const Grads& g,
                         const Grads& expected) {
  for (size_t l = 0; l < ctx.spikes.size(); ++l) {
    expect_same_lists(ctx.spikes[l], ref.spikes[l], "layer " + std::to_string(l));
    EXPECT_EQ(ctx.dropped[l], ref.dropped[l]);
    EXPECT_EQ(ctx.dropped_candidates[l], ref.dropped_candidates[l]);
  }
  EXPECT_EQ(ctx.readout, ref.readout);
  EXPECT_EQ(g.w, expected.w);
  EXPECT_EQ(g.w_rec, expected.w_rec);
  EXPECT_EQ(g.bias, expected.bias);
  EXPECT_EQ(g.alpha, expected.alpha);
  EXPECT_EQ(g.theta1, expected.theta1);
  EXPECT_EQ(g.alpha_syn, expected.alpha_syn);
  EXPECT_EQ(g.rho, expected.rho);
  EXPECT_EQ(g.b, expected.b);
  EXPECT_EQ(g.a, expected.a);
  EXPECT_EQ(g.input, expected.input);
}

/// The CUDA driver on the CPU (tests/cpp/emulated_exec.hpp).
test_support::EmulatedExec emulated;
std::shared_ptr<StackContext> emulated_forward(const StackConfig& config,
                                               const std::vector<LayerParams>& params,
                                               const SpikeView& input,
                                               const StackState* initial = nullptr) {
  std::vector<std::vector<float>> thresholds;  // (what the op layer does before dispatch)
  auto ctx = cuda::stack_forward(
      emulated, config, common::per_neuron_thresholds(config, params, thresholds), input, initial);
  ctx->input_capacity = input.K;
  ctx->thresholds = std::move(thresholds);
  return ctx;
}
void emulated_backward(StackContext& ctx, const std::vector<const float*>& g_out,
                       const std::vector<LayerGrads>& grads, float* grad_input) {
  cuda::stack_backward(emulated,
                       dynamic_cast<cuda::DeviceContext<test_support::EmulatedExec>&>(ctx), g_out,
                       grads, grad_input);
}

using ForwardFn = std::shared_ptr<StackContext> (*)(const StackConfig&,
                                                    const std::vector<LayerParams>&,
                                                    const SpikeView&, const StackState*);

/// Forward and backward of case c (with `forward` and `backward`) against the reference.
void expect_matches_reference(const Case& c, Mode mode, Device device,
                              ForwardFn forward = lif_stack_forward,
                              BackwardFn backward = op_backward) {
  Net net = make_net(c, mode, 17);
  net.config.device = device;
  const SpikeTensor input = make_input(c, 17);
  auto ctx = forward(net.config, net.params(), input.view(), nullptr);
  const auto ref = reference::forward(net.config, net.ref, input.view());
  ASSERT_EQ(ctx->spikes.size(), ref.spikes.size());
  for (size_t l = 0; l < ref.spikes.size(); ++l) {
    expect_same_lists(ctx->spikes[l], ref.spikes[l], "layer " + std::to_string(l));
    EXPECT_EQ(ctx->dropped[l], ref.dropped[l]) << "layer " << l;
    EXPECT_EQ(ctx->dropped_candidates[l], ref.dropped_candidates[l]) << "layer " << l;
    EXPECT_EQ(ctx->spikes[l].dropped_candidates(), ref.dropped_candidates[l]) << "layer " << l;
  }
  if (c.classes > 0) expect_close(ctx->readout, ref.readout, "readout", 1e-4);

  const auto g_out = make_grad_outputs(*ctx, 17);
  std::vector<std::vector<double>> ref_out;
  ref_out.reserve(g_out.size());
  for (const auto& x : g_out) ref_out.push_back(to_double(x));
  const auto ref_g = reference::backward(net.config, net.ref, input.view(), ref, ref_out);
  const Grads g = run_backward(*ctx, net, g_out, backward);
  for (size_t l = 0; l < net.w.size(); ++l) {
    expect_close(g.w[l], ref_g.weight[l], "dW layer " + std::to_string(l));
    expect_close(g.w_rec[l], ref_g.weight_rec[l], "dW_rec layer " + std::to_string(l));
    expect_close(g.bias[l], ref_g.bias[l], "dbias layer " + std::to_string(l));
    // dV/dalpha = leak' - (V - leak) / (1 - alpha) cancels: float32 keeps about 1e-3 of it
    expect_close(g.alpha[l], ref_g.alpha[l], "dalpha layer " + std::to_string(l), 2e-3);
    expect_close(g.theta1[l], ref_g.theta1[l], "dtheta1 layer " + std::to_string(l));
    expect_close(g.alpha_syn[l], ref_g.alpha_syn[l], "dalpha_syn layer " + std::to_string(l));
    expect_close(g.rho[l], ref_g.rho[l], "drho layer " + std::to_string(l));
    expect_close(g.b[l], ref_g.b[l], "db layer " + std::to_string(l));
    expect_close(g.a[l], ref_g.a[l], "da layer " + std::to_string(l));
  }
  expect_close(g.input, ref_g.input, "d input entries");
}

/// Why this build or machine cannot run `device`, or "" when it can.
std::string unavailable(const std::string& device) {
  const auto devices = available_devices();
  if (std::find(devices.begin(), devices.end(), device) != devices.end()) return "";
  return device + " is not available here: " +
         (device != "cuda" || build_info().cuda ? "no device found at run time"
                                                : "this build has no CUDA backend");
}

/// The CPU backend's run of case c with the random overflow policy (the baseline the other
/// backends and paths are held to): the network, input, output gradients and the gradients.
struct CpuRun {
  Net net;
  SpikeTensor input;
  std::shared_ptr<StackContext> ctx;
  std::vector<std::vector<float>> g_out;
  Grads grads;
};
CpuRun cpu_run(const Case& c, uint32_t seed, uint64_t overflow_seed) {
  CpuRun r{make_net(c, Mode::sparse, seed), make_input(c, seed), nullptr, {}, {}};
  r.net.config.overflow = OverflowPolicy::random;
  r.net.config.seed = overflow_seed;
  r.ctx = lif_stack_forward(r.net.config, r.net.params(), r.input.view());
  r.g_out = make_grad_outputs(*r.ctx, seed);
  r.grads = run_backward(*r.ctx, r.net, r.g_out);
  return r;
}

class StackVsReference : public ::testing::TestWithParam<std::tuple<std::string, Case>> {};

TEST_P(StackVsReference, ForwardAndBackward) {
  const auto& [device, c] = GetParam();
  if (const std::string why = unavailable(device); !why.empty()) GTEST_SKIP() << why;
  for (Mode mode : {Mode::sparse, Mode::dense}) {
    if (mode == Mode::dense && device == "ipu-model") continue;  // the IPU runs the method only
    SCOPED_TRACE(mode == Mode::sparse ? "sparse" : "dense");
    expect_matches_reference(c, mode, parse_device(device));
  }
}

std::vector<Case> sweep() {
  std::vector<Case> cases;
  cases.push_back({"basic", 12, 3, 20, {29}, 8});
  cases.push_back({"t1", 1, 3, 20, {13}, 4});
  cases.push_back({"b1", 10, 1, 20, {13}, 4});
  cases.push_back({"silent_input", 8, 2, 16, {11}, 4, 0.0});
  cases.push_back({"overflow", 15, 2, 30, {40}, 2, 0.4});
  cases.push_back({"wide_capacity", 10, 2, 17, {13}, 13});
  cases.push_back({"two_layers_readout", 14, 3, 24, {21, 19}, 6, 0.25, 5});
  Case delayed{"delayed", 14, 3, 24, {21, 19}, 6, 0.25, 5};
  delayed.coupling = Coupling::delayed;
  cases.push_back(delayed);
  Case recurrent{"recurrent", 16, 2, 18, {23}, 6, 0.2, 3, true};
  cases.push_back(recurrent);
  Case rec_delayed{"recurrent_delayed_bias", 12, 2, 18, {15, 14}, 5, 0.3, 0, true};
  rec_delayed.coupling = Coupling::delayed;
  rec_delayed.bias = true;
  cases.push_back(rec_delayed);
  Case mask{"mask_reset_grad", 12, 3, 20, {25}, 7, 0.25, 4};
  mask.reset_grad = ResetGrad::mask;
  cases.push_back(mask);
  Case spike_reset{"spike_reset_overflow", 12, 2, 30, {33}, 3, 0.4, 0, true};
  spike_reset.reset = ResetMode::spike;
  spike_reset.reset_grad = ResetGrad::mask;
  cases.push_back(spike_reset);
  for (auto s : {Surrogate::arctan, Surrogate::triangle, Surrogate::sigmoid}) {
    Case sc{"surrogate_" + std::to_string(static_cast<int>(s)), 10, 2, 20, {17}, 6, 0.25, 3};
    sc.surrogate = s;
    cases.push_back(sc);
  }
  Case thresholds{"per_neuron_theta1_mask", 12, 3, 20, {21, 18}, 6, 0.3, 3};
  thresholds.per_neuron_theta1 = true;
  thresholds.reset_grad = ResetGrad::mask;
  cases.push_back(thresholds);
  Case subtract{"subtract_reset", 14, 3, 20, {23}, 7, 0.3, 4};
  subtract.reset = ResetMode::subtract;
  subtract.per_neuron_theta1 = true;
  cases.push_back(subtract);
  Case subtract_rec{"subtract_recurrent_overflow", 12, 2, 24, {27}, 3, 0.4, 0, true};
  subtract_rec.reset = ResetMode::subtract;
  subtract_rec.bias = true;
  cases.push_back(subtract_rec);
  Case cuba{"cuba_two_layers_readout", 14, 3, 24, {21, 19}, 6, 0.25, 5};
  cuba.neuron = kernels::neurons::Neuron::cuba;
  cuba.per_neuron_theta1 = true;
  cases.push_back(cuba);
  Case cuba_rec{"cuba_recurrent_delayed_subtract", 12, 2, 24, {19, 15}, 4, 0.35, 3, true};
  cuba_rec.neuron = kernels::neurons::Neuron::cuba;
  cuba_rec.coupling = Coupling::delayed;
  cuba_rec.reset = ResetMode::subtract;
  cuba_rec.bias = true;
  cases.push_back(cuba_rec);
  Case cuba_spike{"cuba_spike_reset_mask_overflow", 12, 2, 30, {33}, 3, 0.4, 0, true};
  cuba_spike.neuron = kernels::neurons::Neuron::cuba;
  cuba_spike.reset = ResetMode::spike;
  cuba_spike.reset_grad = ResetGrad::mask;
  cases.push_back(cuba_spike);
  // the adaptive models, each with a stack, a delayed recurrent layer and the spike reset
  for (const auto& [tag, neuron] : {std::pair{"alif", kernels::neurons::Neuron::alif},
                                    std::pair{"adlif", kernels::neurons::Neuron::adlif}}) {
    const std::string name = tag;
    Case stack{name + "_two_layers_readout", 14, 3, 24, {21, 19}, 6, 0.3, 5};
    stack.per_neuron_theta1 = true;
    Case rec{name + "_recurrent_delayed_mask", 12, 2, 24, {19, 15}, 4, 0.35, 3, true};
    rec.coupling = Coupling::delayed;
    rec.reset_grad = ResetGrad::mask;
    rec.bias = true;
    Case spike{name + "_spike_reset_overflow", 12, 2, 30, {33}, 3, 0.4, 0, true};
    spike.reset = ResetMode::spike;
    for (Case* c : {&stack, &rec, &spike}) {
      c->neuron = neuron;
      cases.push_back(*c);
    }
  }
  return cases;
}

std::vector<std::tuple<std::string, Case>> device_cases() {
  std::vector<std::tuple<std::string, Case>> all;
  for (const std::string d : {"cpu", "cuda", "ipu-model"})  // cuda skips without a GPU
    for (const Case& c : sweep()) all.emplace_back(d, c);
  return all;
}

INSTANTIATE_TEST_SUITE_P(Devices, StackVsReference, ::testing::ValuesIn(device_cases()),
                         [](const auto& info) {
                           std::string d = std::get<0>(info.param);
                           std::replace(d.begin(), d.end(), '-', '_');
                           return d + "_" + std::get<1>(info.param).name;
                         });

// The paper's exactness check: with K >= N no list overflows, and the sparse forward and
// gradients equal the dense ones computed with the masked surrogate sigma'(V - theta1) H(V - theta2).
class SparseEqualsDense : public ::testing::TestWithParam<Case> {};

TEST_P(SparseEqualsDense, ForwardAndGradients) {
  const Case& c = GetParam();
  Net sparse = make_net(c, Mode::sparse, 5), dense = make_net(c, Mode::dense, 5);
  for (LayerConfig& layer : sparse.config.layers) layer.capacity = layer.n_out;  // K = N
  const SpikeTensor input = make_input(c, 5);
  auto cs = lif_stack_forward(sparse.config, sparse.params(), input.view());
  auto cd = lif_stack_forward(dense.config, dense.params(), input.view());
  for (size_t l = 0; l < cs->spikes.size(); ++l) {
    expect_same_lists(cs->spikes[l], cd->spikes[l], "layer " + std::to_string(l));
    EXPECT_EQ(cs->dropped[l], 0);
  }
  const auto g_out = make_grad_outputs(*cs, 5);
  const Grads gs = run_backward(*cs, sparse, g_out);
  const Grads gd = run_backward(*cd, dense, g_out);
  for (size_t l = 0; l < gs.w.size(); ++l) {
    expect_close(gs.w[l], to_double(gd.w[l]), "dW layer " + std::to_string(l), 1e-4);
    expect_close(gs.w_rec[l], to_double(gd.w_rec[l]), "dW_rec layer " + std::to_string(l), 1e-4);
  }
  expect_close(gs.input, to_double(gd.input), "d input", 1e-4);
}

std::vector<Case> exactness_cases() {
  Case same{"same_step", 15, 3, 20, {24, 18}, 0, 0.25, 4};
  Case delayed = same;
  delayed.name = "delayed";
  delayed.coupling = Coupling::delayed;
  Case recurrent{"recurrent", 15, 3, 20, {22}, 0, 0.25, 0, true};
  recurrent.reset_grad = ResetGrad::mask;
  Case rec_delayed{"recurrent_delayed", 12, 2, 20, {17, 15}, 0, 0.3, 3, true};
  rec_delayed.coupling = Coupling::delayed;
  Case cuba{"cuba_recurrent", 15, 3, 20, {22, 16}, 0, 0.25, 3, true};
  cuba.neuron = kernels::neurons::Neuron::cuba;
  Case alif{"alif_recurrent", 15, 3, 20, {22, 16}, 0, 0.3, 3, true};
  alif.neuron = kernels::neurons::Neuron::alif;
  Case adlif{"adlif_recurrent", 15, 3, 20, {22, 16}, 0, 0.3, 3, true};
  adlif.neuron = kernels::neurons::Neuron::adlif;
  return {same, delayed, recurrent, rec_delayed, cuba, alif, adlif};
}

INSTANTIATE_TEST_SUITE_P(Paper, SparseEqualsDense, ::testing::ValuesIn(exactness_cases()),
                         [](const auto& info) { return info.param.name; });

// Checkpointing in time: keeping only the lists and recomputing the membranes window by window
// gives bitwise the stored path's spikes, readout and gradients, for every case of the sweep, with
// windows of one step, windows that do not divide T, and the random overflow policy.
class RecomputeEqualsStored : public ::testing::TestWithParam<Case> {};

TEST_P(RecomputeEqualsStored, BitwiseSameSpikesAndGradients) {
  Case c = GetParam();
  for (int B : {64, 256}) {  // weight-gradient chunks of 4 steps and of 1 step
    c.B = B;
    CpuRun stored = cpu_run(c, 11, 3);
    Net& net = stored.net;
    for (int segment : {1, 3, 5, c.T - 1, c.T + 4}) {
      SCOPED_TRACE("B " + std::to_string(B) + ", segment " + std::to_string(segment));
      net.config.recompute_segment = segment;
      auto ctx = lif_stack_forward(net.config, net.params(), stored.input.view());
      expect_bitwise_same(*ctx, *stored.ctx, run_backward(*ctx, net, stored.g_out), stored.grads);
    }
  }
}

// With no learnable neuron parameter, backward needs only the membrane at the list entries,
// which the forward keeps, and the CPU recomputes nothing: for every model whose carry reads no
// state (all but the mask gradient with state reset). The gradients are bitwise the stored path's,
// and stay so with the states kept at the window ends, which a recomputation would start from,
// overwritten with NaN. The others recompute and equal the stored path too.
TEST_P(RecomputeEqualsStored, FromListedMembranesWithoutNeuronGradients) {
  Case c = GetParam();
  const bool carry_reads_states = c.reset == ResetMode::state && c.reset_grad == ResetGrad::mask;
  for (int B : {64, 256}) {
    c.B = B;
    CpuRun stored = cpu_run(c, 11, 3);
    Net& net = stored.net;
    const auto again = lif_stack_forward(net.config, net.params(), stored.input.view());
    const Grads expected = run_backward(*again, net, stored.g_out, op_backward, false);
    for (int segment : {1, 5, c.T - 1}) {
      SCOPED_TRACE("B " + std::to_string(B) + ", segment " + std::to_string(segment));
      net.config.recompute_segment = segment;
      auto ctx = lif_stack_forward(net.config, net.params(), stored.input.view());
      auto& cpu = dynamic_cast<cpu::CpuContext&>(*ctx);
      const int windows = (c.T + cpu.window - 1) / cpu.window;
      for (size_t l = 0; l < cpu.spikes.size() && !carry_reads_states; ++l) {
        const int states = common::layer_model(cpu.config.layers[l], cpu.params[l]).states();
        std::fill_n(cpu.state[l].get(),
                    static_cast<int64_t>(states) * (windows - 1) * B * cpu.config.layers[l].n_out,
                    std::numeric_limits<float>::quiet_NaN());
      }
      expect_bitwise_same(*ctx, *stored.ctx,
                          run_backward(*ctx, net, stored.g_out, op_backward, false), expected);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sweep, RecomputeEqualsStored, ::testing::ValuesIn(sweep()),
                         [](const auto& info) { return info.param.name; });

// Explicit state: forwards over consecutive chunks, each continuing from the state the one before
// left, equal one forward over the whole sequence bit for bit (lists, readout, drops and the final
// state), in sparse mode with stored and recomputed membranes and in dense mode, with the random
// overflow policy (whose streams continue by absolute step).
class ChunksEqualWhole : public ::testing::TestWithParam<Case> {};

/// Steps [t0, t1) of `input`.
SpikeView steps_of(const SpikeView& input, int t0, int t1) {
  SpikeView v = input;
  const int64_t lists = static_cast<int64_t>(t0) * input.B;
  v.ids += lists * input.K;
  v.n_spk += lists;
  v.n_tot += lists;
  v.T = t1 - t0;
  return v;
}

void expect_same_state(const StackState& a, const StackState& b) {
  EXPECT_EQ(a.steps, b.steps);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    EXPECT_EQ(a.layers[l].states, b.layers[l].states) << "layer " << l;
    if (a.layers[l].spikes.T() > 0)
      expect_same_lists(a.layers[l].spikes, b.layers[l].spikes,
                        "state of layer " + std::to_string(l));
  }
}

TEST_P(ChunksEqualWhole, BitwiseSameListsReadoutAndState) {
  const Case& c = GetParam();
  struct Variant {
    Mode mode;
    int segment;
    Device device;
  };
  for (const auto& [mode, segment, device] :
       {Variant{Mode::sparse, 0, Device::cpu}, Variant{Mode::sparse, 3, Device::cpu},
        Variant{Mode::dense, 0, Device::cpu}, Variant{Mode::sparse, 0, Device::ipu_model}}) {
    SCOPED_TRACE(std::string(device_name(device)) + (mode == Mode::sparse ? " sparse" : " dense") +
                 ", segment " + std::to_string(segment));
    Net net = make_net(c, mode, 23);
    net.config.device = device;
    net.config.overflow = OverflowPolicy::random;
    net.config.seed = 5;
    net.config.recompute_segment = segment;
    const SpikeTensor input = make_input(c, 23);
    const auto whole = lif_stack_forward(net.config, net.params(), input.view());
    const StackState whole_state = final_state(*whole);
    EXPECT_EQ(whole_state.steps, c.T);
    for (const std::vector<int>& cuts :
         std::vector<std::vector<int>>{{1}, {c.T / 2}, {2, c.T - 1}}) {
      std::vector<int> bounds{0};
      for (int t : cuts)
        if (t > bounds.back() && t < c.T) bounds.push_back(t);
      bounds.push_back(c.T);
      StackState state;
      std::vector<std::shared_ptr<StackContext>> chunks;
      for (size_t k = 0; k + 1 < bounds.size(); ++k) {
        chunks.push_back(lif_stack_forward(net.config, net.params(),
                                           steps_of(input.view(), bounds[k], bounds[k + 1]),
                                           k == 0 ? nullptr : &state));
        state = final_state(*chunks.back());
      }
      expect_same_state(state, whole_state);
      for (size_t k = 0; k < chunks.size(); ++k) {
        const StackContext& chunk = *chunks[k];
        const int t0 = bounds[k], steps = bounds[k + 1] - t0;
        for (size_t l = 0; l < chunk.spikes.size(); ++l) {
          const SpikeView got = chunk.spikes[l].view(), all = whole->spikes[l].view();
          for (int t = 0; t < steps; ++t)
            for (int b = 0; b < c.B; ++b) {
              ASSERT_EQ(got.spikes(t, b), all.spikes(t0 + t, b))
                  << "layer " << l << " t " << t0 + t;
              ASSERT_EQ(got.total(t, b), all.total(t0 + t, b)) << "layer " << l << " t " << t0 + t;
              for (int i = 0; i < got.total(t, b); ++i)
                ASSERT_EQ(got.list(t, b)[i], all.list(t0 + t, b)[i]);
            }
        }
        if (c.classes > 0) {
          const int64_t row = static_cast<int64_t>(c.B) * c.classes;
          const std::vector<float> part(whole->readout.begin() + t0 * row,
                                        whole->readout.begin() + (t0 + steps) * row);
          EXPECT_EQ(chunk.readout, part);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sweep, ChunksEqualWhole, ::testing::ValuesIn(sweep()),
                         [](const auto& info) { return info.param.name; });

// A state that does not fit the stack is refused, naming the op, before anything runs; a backend
// that does not continue sequences says so.
TEST(ExplicitState, ForgedStatesAreRefused) {
  Case c{"recurrent", 6, 2, 18, {23}, 6, 0.2, 3, true};
  Net net = make_net(c, Mode::sparse, 3);
  const SpikeTensor input = make_input(c, 3);
  const StackState good = final_state(*lif_stack_forward(net.config, net.params(), input.view()));
  EXPECT_EQ(good.steps, c.T);
  ASSERT_NO_THROW(lif_stack_forward(net.config, net.params(), input.view(), &good));
  const auto refused = [&](const StackState& s, const std::string& what) {
    try {
      lif_stack_forward(net.config, net.params(), input.view(), &s);
      ADD_FAILURE() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("lif_stack_forward"), std::string::npos) << e.what();
    }
  };
  StackState s = good;
  s.B = 3;
  refused(s, "another batch");
  s = good;
  s.layers.pop_back();
  refused(s, "a layer missing");
  s = good;
  s.layers[0].states.pop_back();
  refused(s, "states of the wrong size");
  s = good;
  s.layers[0].states[4] = std::nanf("");
  refused(s, "a NaN state");
  s = good;
  s.layers[0].spikes.list(0, 0)[0] = 23;
  s.layers[0].spikes.n_spk(0, 0) = s.layers[0].spikes.n_tot(0, 0) = 1;
  refused(s, "a spike id past the layer");
  s = good;
  s.layers[1].spikes = SpikeTensor(1, 2, 3, 3);
  refused(s, "spikes for a readout");
  s = good;
  s.steps = -1;
  refused(s, "a negative step count");
}

// Overflow: spikes keep priority over candidates and the dropped count is exact.
TEST(Overflow, SpikesKeepPriorityAndDropsAreCounted) {
  Case c{"overflow", 20, 4, 30, {40}, 3, 0.5};
  Net net = make_net(c, Mode::sparse, 3);
  const SpikeTensor input = make_input(c, 3);
  auto ctx = lif_stack_forward(net.config, net.params(), input.view());
  const auto ref = reference::forward(net.config, net.ref, input.view());
  // Count spikes above theta1 (and candidates in (theta2, theta1]) per list from the reference
  // membranes, independently of selection.
  int64_t expected_dropped = 0, expected_candidates_dropped = 0;
  const SpikeView out = ctx->spikes[0].view();
  for (int t = 0; t < c.T; ++t)
    for (int b = 0; b < c.B; ++b) {
      int above = 0, between = 0;
      for (int j = 0; j < 40; ++j) {
        const double v = ref.membrane[0][(static_cast<size_t>(t) * c.B + b) * 40 + j];
        above += v > 1.0;
        between += v > 0.9 && v <= 1.0;
      }
      expected_dropped += std::max(0, above - 3);
      expected_candidates_dropped += between - (out.total(t, b) - out.spikes(t, b));
      if (above >= 3) EXPECT_EQ(out.total(t, b), out.spikes(t, b)) << "candidates displaced spikes";
      EXPECT_EQ(out.spikes(t, b), std::min(above, 3));
    }
  EXPECT_GT(expected_dropped, 0);
  EXPECT_EQ(ctx->dropped[0], expected_dropped);
  EXPECT_EQ(ctx->spikes[0].dropped(), expected_dropped);
  EXPECT_GT(expected_candidates_dropped, 0);
  EXPECT_EQ(ctx->dropped_candidates[0], expected_candidates_dropped);
}

// Results do not depend on the number of worker threads.
TEST(Determinism, SameResultsForOneAndTwoThreads) {
  Case c{"determinism", 20, 8, 40, {64, 48}, 10, 0.25, 6, true};
  for (Mode mode : {Mode::sparse, Mode::dense}) {
    std::vector<Grads> runs;
    std::vector<std::vector<float>> readouts;
    for (int threads : {1, 2, 0}) {
      set_num_threads(threads);
      Net net = make_net(c, mode, 11);
      const SpikeTensor input = make_input(c, 11);
      auto ctx = lif_stack_forward(net.config, net.params(), input.view());
      readouts.push_back(ctx->readout);
      runs.push_back(run_backward(*ctx, net, make_grad_outputs(*ctx, 11)));
    }
    set_num_threads(0);
    for (size_t r = 1; r < runs.size(); ++r) {
      EXPECT_EQ(readouts[r], readouts[0]);
      EXPECT_EQ(runs[r].w, runs[0].w);
      EXPECT_EQ(runs[r].w_rec, runs[0].w_rec);
      EXPECT_EQ(runs[r].input, runs[0].input);
    }
  }
}

TEST(Random, OverflowPolicyIsSeededAndKeepsSpikes) {
  Case c{"random", 10, 3, 30, {40}, 3, 0.5};
  Net net = make_net(c, Mode::sparse, 4);
  net.config.overflow = OverflowPolicy::random;
  const SpikeTensor input = make_input(c, 4);
  net.config.seed = 1;
  auto a = lif_stack_forward(net.config, net.params(), input.view());
  auto b = lif_stack_forward(net.config, net.params(), input.view());
  net.config.seed = 2;
  auto d = lif_stack_forward(net.config, net.params(), input.view());
  expect_same_lists(a->spikes[0], b->spikes[0], "same seed");
  EXPECT_NE(a->spikes[0].to_dense(), d->spikes[0].to_dense());
  EXPECT_GT(a->dropped[0], 0);
}

TEST(Validation, BadInputsGetErrorsThatNameTheOp) {
  Case c{"validation", 4, 2, 10, {12}, 4, 0.3};
  Net net = make_net(c, Mode::sparse, 1);
  const SpikeTensor input = make_input(c, 1);
  const auto expect_error = [&](const StackConfig& cfg, const std::vector<LayerParams>& p,
                                const std::string& fragment) {
    try {
      lif_stack_forward(cfg, p, input.view());
      FAIL() << "accepted: " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("[lif_stack_forward]"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  StackConfig cfg = net.config;
  cfg.layers[0].capacity = 0;
  expect_error(cfg, net.params(), "capacity 0 must be positive");
  cfg = net.config;
  cfg.layers[0].n_in = 11;
  expect_error(cfg, net.params(), "expects 11 inputs but receives 10");
  cfg = net.config;
  cfg.layers[0].theta2 = 2.0f;
  expect_error(cfg, net.params(), "theta2");
  cfg = net.config;
  cfg.recompute_segment = -1;
  expect_error(cfg, net.params(), "recompute_segment -1 must be 0");
  cfg.recompute_segment = 2;
  cfg.mode = Mode::dense;
  expect_error(cfg, net.params(), "recompute_segment needs sparse mode");
  net.w[0][3] = NAN;
  expect_error(net.config, net.params(), "not finite");
  net.w[0][3] = 0.1f;
  net.alpha[0][2] = 1.5f;
  expect_error(net.config, net.params(), "alpha[2]");
  net.alpha[0][2] = 0.9f;
  // the synaptic decay: only for, and required by, cuba layers, in [0, 1]
  std::vector<float> syn(net.alpha[0].size(), 0.7f);
  std::vector<LayerParams> p = net.params();
  p[0].alpha_syn = syn.data();
  expect_error(net.config, p, "alpha_syn does not belong to this neuron model");
  cfg = net.config;
  cfg.layers[0].neuron = kernels::neurons::Neuron::cuba;
  expect_error(cfg, net.params(), "alpha_syn is missing");
  syn[1] = -0.1f;
  expect_error(cfg, p, "alpha_syn[1]");
  syn[1] = 0.7f;
  cfg.layers[0].neuron = static_cast<kernels::neurons::Neuron>(7);
  expect_error(cfg, p, "unknown neuron model 7");
  auto ctx = lif_stack_forward(net.config, net.params(), input.view());
  const auto g_out = make_grad_outputs(*ctx, 1);
  run_backward(*ctx, net, g_out);
  EXPECT_THROW(run_backward(*ctx, net, g_out), Error);  // a context is consumed once
}

}  // namespace

TEST(MemoryLimit, OversizedRequestsFailBeforeAllocating) {
  Case c{"memory", 50, 16, 40, {256}, 20, 0.2, 4};
  Net net = make_net(c, Mode::sparse, 3);
  const SpikeTensor input = make_input(c, 3);
  set_memory_limit(64 << 10);  // 64 KiB: the forward needs about 50*16*(256+20+2+4+...)*4 B
  try {
    lif_stack_forward(net.config, net.params(), input.view());
    FAIL() << "a forward above the memory limit was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[lif_stack_forward] the forward pass needs"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("memory limit"), std::string::npos) << e.what();
  }
  EXPECT_THROW(SpikeTensor(1000, 1000, 1000, 10), Error);  // 4 GB of lists: refused, not allocated
  set_memory_limit(0);
  EXPECT_GT(memory_limit(), int64_t{64} << 20);  // the default: physical memory
  auto ctx = lif_stack_forward(net.config, net.params(), input.view());
  set_memory_limit(64 << 10);  // a backward above the limit is refused, the context is kept
  EXPECT_THROW(run_backward(*ctx, net, make_grad_outputs(*ctx, 3)), Error);
  EXPECT_FALSE(ctx->backward_done);
  set_memory_limit(0);
  run_backward(*ctx, net, make_grad_outputs(*ctx, 3));
  EXPECT_TRUE(ctx->backward_done);
  EXPECT_THROW(set_memory_limit(-1), Error);
}

// The IPU model executes the tile plan and equals the CPU backend bit for bit: every case of the
// sweep, both couplings, the random overflow policy, and tiles of 2, 6 and 16 neurons (so that
// slices cut the dot-product lanes at different columns).
class IpuModelEqualsCpu : public ::testing::TestWithParam<Case> {};

TEST_P(IpuModelEqualsCpu, BitwiseSameSpikesAndGradients) {
  Case c = GetParam();
  for (Coupling coupling : {Coupling::same_step, Coupling::delayed}) {
    c.coupling = coupling;
    const CpuRun cpu = cpu_run(c, 23, 9);
    for (int neurons_per_tile : {0, 6, 16}) {
      SCOPED_TRACE(std::string(coupling == Coupling::delayed ? "delayed" : "same step") + ", " +
                   std::to_string(neurons_per_tile) + " neurons per tile");
      ipu::set_ipu_model_neurons_per_tile(neurons_per_tile);
      StackConfig config = cpu.net.config;
      config.device = Device::ipu_model;
      auto ctx = lif_stack_forward(config, cpu.net.params(), cpu.input.view());
      ipu::set_ipu_model_neurons_per_tile(0);
      expect_bitwise_same(*ctx, *cpu.ctx, run_backward(*ctx, cpu.net, cpu.g_out), cpu.grads);
      const std::optional<ipu::RunReport> report = ipu::run_report(*ctx);
      ASSERT_TRUE(report.has_value());
      EXPECT_EQ(static_cast<int>(report->tile_bytes.size()), report->plan.tiles_used);
      if (neurons_per_tile > 0) EXPECT_EQ(report->plan.neurons_per_tile, neurons_per_tile);
      for (int64_t bytes : report->tile_bytes) EXPECT_LE(bytes, report->plan.target.bytes_per_tile);
      EXPECT_GT(report->exchange_bytes_forward, 0);
      EXPECT_FALSE(report->compute_sets.empty());
      EXPECT_FALSE(ipu::run_report(*cpu.ctx).has_value());
    }
  }
}

// Continuing from a state (the CPU's after the first half of the input), the ipu-model's forward
// and truncated backward equal the CPU's bit for bit.
TEST_P(IpuModelEqualsCpu, ContinuedFromAStateBitwise) {
  Case c = GetParam();
  if (c.T < 2) GTEST_SKIP() << "one step: nothing to continue";
  for (Coupling coupling : {Coupling::same_step, Coupling::delayed}) {
    c.coupling = coupling;
    SCOPED_TRACE(coupling == Coupling::delayed ? "delayed" : "same step");
    CpuRun cpu = cpu_run(c, 29, 4);
    const int half = c.T / 2;
    const SpikeView first = steps_of(cpu.input.view(), 0, half),
                    rest = steps_of(cpu.input.view(), half, c.T);
    const StackState state =
        final_state(*lif_stack_forward(cpu.net.config, cpu.net.params(), first));
    auto on_cpu = lif_stack_forward(cpu.net.config, cpu.net.params(), rest, &state);
    const auto g_out = make_grad_outputs(*on_cpu, 29);
    const Grads expected = run_backward(*on_cpu, cpu.net, g_out);
    StackConfig config = cpu.net.config;
    config.device = Device::ipu_model;
    auto on_ipu = lif_stack_forward(config, cpu.net.params(), rest, &state);
    expect_bitwise_same(*on_ipu, *on_cpu, run_backward(*on_ipu, cpu.net, g_out), expected);
    expect_same_state(final_state(*on_ipu), final_state(*on_cpu));
  }
}

INSTANTIATE_TEST_SUITE_P(Sweep, IpuModelEqualsCpu, ::testing::ValuesIn(sweep()),
                         [](const auto& info) { return info.param.name; });

TEST(IpuModel, RefusesDenseModeAndModelsThatDoNotFit) {
  Case c{"ipu", 4, 2, 10, {12}, 4, 0.3};
  Net net = make_net(c, Mode::dense, 1);
  net.config.device = Device::ipu_model;
  const SpikeTensor input = make_input(c, 1);
  EXPECT_THROW(lif_stack_forward(net.config, net.params(), input.view()), Error);
  EXPECT_THROW(ipu::set_ipu_model_neurons_per_tile(3), Error);
}

// The CUDA backend's driver and kernel bodies (src/backends/cuda/stack.hpp, bodies.hpp) run on the
// CPU through an emulated grid (blocks of threads with barriers) and equal the CPU backend bit for
// bit in sparse mode: every case of the sweep, both couplings, the random overflow policy, and
// B = 64 (weight-gradient chunks of 4 steps), storing every membrane or recomputing them in
// windows (checkpointing in time). Dense mode (its GEMMs in double here) matches the reference.
class EmulatedCudaEqualsCpu : public ::testing::TestWithParam<Case> {};

TEST_P(EmulatedCudaEqualsCpu, BitwiseSameSpikesAndGradients) {
  Case c = GetParam();
  for (int B : {c.B, 64})
    for (Coupling coupling : {Coupling::same_step, Coupling::delayed}) {
      SCOPED_TRACE("B " + std::to_string(B) +
                   (coupling == Coupling::delayed ? ", delayed" : ", same step"));
      c.B = B;
      c.coupling = coupling;
      CpuRun cpu = cpu_run(c, 29, 4);
      for (int segment : {0, 3}) {  // stored, and checkpointing in time (windows of 4 at B = 64)
        SCOPED_TRACE("segment " + std::to_string(segment));
        cpu.net.config.recompute_segment = segment;
        auto ctx = emulated_forward(cpu.net.config, cpu.net.params(), cpu.input.view());
        expect_bitwise_same(*ctx, *cpu.ctx,
                            run_backward(*ctx, cpu.net, cpu.g_out, emulated_backward), cpu.grads);
      }
    }
  SCOPED_TRACE("dense");
  expect_matches_reference(GetParam(), Mode::dense, Device::cpu, emulated_forward,
                           emulated_backward);
}

// Under checkpointing in time with no learnable neuron parameter, the CUDA driver reads the
// membranes its forward kept at the list entries and recomputes nothing, as the CPU does: the
// gradients are bitwise the CPU's with the states kept at the window ends, which a recomputation
// would start from, overwritten with NaN (for every model whose carry reads no state; the others
// keep no entries and recompute). B = 64: windows of 4 steps.
TEST_P(EmulatedCudaEqualsCpu, FromListedMembranesWithoutNeuronGradients) {
  Case c = GetParam();
  if (c.T <= 4) GTEST_SKIP() << "a single window of 4 steps";
  const bool carry_reads_states = c.reset == ResetMode::state && c.reset_grad == ResetGrad::mask;
  c.B = 64;
  CpuRun cpu = cpu_run(c, 29, 4);
  const auto again = lif_stack_forward(cpu.net.config, cpu.net.params(), cpu.input.view());
  const Grads expected = run_backward(*again, cpu.net, cpu.g_out, op_backward, false);
  cpu.net.config.recompute_segment = 3;
  auto ctx = emulated_forward(cpu.net.config, cpu.net.params(), cpu.input.view());
  auto& device = dynamic_cast<cuda::DeviceContext<test_support::EmulatedExec>&>(*ctx);
  ASSERT_LT(device.window, c.T);  // checkpointing in time takes effect
  for (size_t l = 0; l < device.data.size(); ++l) {
    auto& d = device.data[l];
    const bool readout = device.config.layers[l].kind == LayerKind::readout;
    EXPECT_EQ(d.listed.size() > 0, !carry_reads_states && !readout) << "layer " << l;
    if (d.listed.size() > 0)
      std::fill_n(d.v.data(), d.v.size(), std::numeric_limits<float>::quiet_NaN());
  }
  expect_bitwise_same(*ctx, *cpu.ctx,
                      run_backward(*ctx, cpu.net, cpu.g_out, emulated_backward, false), expected);
}

// Continuing from a state (the CPU's after part of the input), the CUDA driver's sparse forward
// and truncated backward equal the CPU's bit for bit. Dense mode (whose GEMMs are the executor's,
// not the CPU's) is held to its own whole-sequence run: its chunks, each from the state the
// one before left, give the same lists, readout and final state.
TEST_P(EmulatedCudaEqualsCpu, ContinuedFromAStateBitwise) {
  Case c = GetParam();
  if (c.T < 3) GTEST_SKIP() << "too few steps to continue";
  for (Mode mode : {Mode::sparse, Mode::dense})
    for (Coupling coupling : {Coupling::same_step, Coupling::delayed}) {
      c.coupling = coupling;
      SCOPED_TRACE(std::string(mode == Mode::sparse ? "sparse, " : "dense, ") +
                   (coupling == Coupling::delayed ? "delayed" : "same step"));
      Net net = make_net(c, mode, 31);
      net.config.overflow = OverflowPolicy::random;
      net.config.seed = 6;
      const SpikeTensor input = make_input(c, 31);
      const int half = c.T / 2;
      const SpikeView first = steps_of(input.view(), 0, half),
                      rest = steps_of(input.view(), half, c.T);
      if (mode == Mode::sparse) {
        const StackState state = final_state(*lif_stack_forward(net.config, net.params(), first));
        auto on_cpu = lif_stack_forward(net.config, net.params(), rest, &state);
        const auto g_out = make_grad_outputs(*on_cpu, 31);
        const Grads expected = run_backward(*on_cpu, net, g_out);
        auto on_cuda = emulated_forward(net.config, net.params(), rest, &state);
        expect_bitwise_same(*on_cuda, *on_cpu,
                            run_backward(*on_cuda, net, g_out, emulated_backward), expected);
        expect_same_state(final_state(*on_cuda), final_state(*on_cpu));
        continue;
      }
      const auto whole = emulated_forward(net.config, net.params(), input.view());
      const StackState state = final_state(*emulated_forward(net.config, net.params(), first));
      const auto second = emulated_forward(net.config, net.params(), rest, &state);
      expect_same_state(final_state(*second), final_state(*whole));
      for (size_t l = 0; l < second->spikes.size(); ++l) {
        const SpikeView got = second->spikes[l].view(), all = whole->spikes[l].view();
        for (int t = 0; t < c.T - half; ++t)
          for (int b = 0; b < c.B; ++b) {
            ASSERT_EQ(got.total(t, b), all.total(half + t, b)) << "layer " << l << " t " << t;
            for (int k = 0; k < got.total(t, b); ++k)
              ASSERT_EQ(got.list(t, b)[k], all.list(half + t, b)[k]);
          }
      }
      if (c.classes > 0) {
        const int64_t row = static_cast<int64_t>(c.B) * c.classes;
        EXPECT_EQ(second->readout,
                  std::vector<float>(whole->readout.begin() + half * row, whole->readout.end()));
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Sweep, EmulatedCudaEqualsCpu, ::testing::ValuesIn(sweep()),
                         [](const auto& info) { return info.param.name; });

// Continuing with checkpointing in time that takes effect (B = 64: weight-gradient chunks of 4
// steps, segments of 4 steps), on the emulated CUDA grid: the continued forward and its backward
// equal the CPU's, which equal storing every membrane, bit for bit.
TEST(EmulatedCuda, ContinuedWithRecomputeBitwise) {
  using kernels::neurons::Neuron;
  Case recurrent{"recurrent_delayed", 14, 64, 18, {15, 14}, 5, 0.3, 3, true};
  recurrent.coupling = Coupling::delayed;
  Case alif = recurrent;
  alif.neuron = Neuron::alif;
  alif.coupling = Coupling::same_step;
  for (const Case& c : {recurrent, alif}) {
    SCOPED_TRACE(c.neuron == Neuron::alif ? "alif" : "lif, delayed");
    Net net = make_net(c, Mode::sparse, 41);
    net.config.overflow = OverflowPolicy::random;
    net.config.seed = 2;
    const SpikeTensor input = make_input(c, 41);
    const SpikeView first = steps_of(input.view(), 0, 5), rest = steps_of(input.view(), 5, c.T);
    const StackState state = final_state(*lif_stack_forward(net.config, net.params(), first));
    auto stored = lif_stack_forward(net.config, net.params(), rest, &state);
    const auto g_out = make_grad_outputs(*stored, 41);
    const Grads expected = run_backward(*stored, net, g_out);
    // without neuron gradients the CPU reads the kept entries instead of recomputing
    const Grads expected_fixed = run_backward(
        *lif_stack_forward(net.config, net.params(), rest, &state), net, g_out, op_backward, false);
    net.config.recompute_segment = 3;  // rounded up to one chunk: 4 steps, windows 4 + 4 + 1
    auto on_cpu = lif_stack_forward(net.config, net.params(), rest, &state);
    ASSERT_TRUE(on_cpu->stored_states(0).empty());  // the membranes are recomputed, not kept
    expect_bitwise_same(*on_cpu, *stored, run_backward(*on_cpu, net, g_out), expected);
    expect_same_state(final_state(*on_cpu), final_state(*stored));
    auto fixed = lif_stack_forward(net.config, net.params(), rest, &state);
    expect_bitwise_same(*fixed, *stored, run_backward(*fixed, net, g_out, op_backward, false),
                        expected_fixed);
    auto on_cuda = emulated_forward(net.config, net.params(), rest, &state);
    expect_bitwise_same(*on_cuda, *stored, run_backward(*on_cuda, net, g_out, emulated_backward),
                        expected);
    expect_same_state(final_state(*on_cuda), final_state(*stored));
  }
}

// On a GPU: the CUDA backend's lists (ids, counts, drops) and readout equal the CPU backend's bit
// for bit; gradients agree to rounding (the sigmoid surrogate's expf differs between the CUDA and
// C libraries by an ulp or two; every other operation rounds as on the CPU).
class CudaEqualsCpu : public ::testing::TestWithParam<Case> {};

TEST_P(CudaEqualsCpu, SameListsAsCpu) {
  if (const std::string why = unavailable("cuda"); !why.empty()) GTEST_SKIP() << why;
  Case c = GetParam();
  for (Coupling coupling : {Coupling::same_step, Coupling::delayed}) {
    SCOPED_TRACE(coupling == Coupling::delayed ? "delayed" : "same step");
    c.coupling = coupling;
    const CpuRun cpu = cpu_run(c, 31, 8);
    const Grads& expected = cpu.grads;
    StackConfig config = cpu.net.config;
    config.device = Device::cuda;
    auto gpu = lif_stack_forward(config, cpu.net.params(), cpu.input.view());
    for (size_t l = 0; l < gpu->spikes.size(); ++l) {
      expect_same_lists(gpu->spikes[l], cpu.ctx->spikes[l], "layer " + std::to_string(l));
      EXPECT_EQ(gpu->dropped[l], cpu.ctx->dropped[l]);
      EXPECT_EQ(gpu->dropped_candidates[l], cpu.ctx->dropped_candidates[l]);
    }
    EXPECT_EQ(gpu->readout, cpu.ctx->readout);
    const Grads g = run_backward(*gpu, cpu.net, cpu.g_out);
    for (size_t l = 0; l < g.w.size(); ++l) {
      expect_close(g.w[l], to_double(expected.w[l]), "dW layer " + std::to_string(l), 1e-5);
      expect_close(g.w_rec[l], to_double(expected.w_rec[l]), "dW_rec " + std::to_string(l), 1e-5);
      expect_close(g.bias[l], to_double(expected.bias[l]), "dbias " + std::to_string(l), 1e-5);
    }
    expect_close(g.input, to_double(expected.input), "d input", 1e-5);
  }
}

/// The sweep, plus layers wider than a 256-thread block (selection over several tiles, the last
/// one partial) at B = 64 (weight-gradient chunks of 4 steps).
std::vector<Case> gpu_cases() {
  std::vector<Case> cases = sweep();
  cases.push_back({"wide", 20, 64, 300, {600, 530}, 60, 0.2, 7});
  Case wide_recurrent{"wide_recurrent_overflow", 16, 64, 257, {700}, 20, 0.3, 0, true};
  wide_recurrent.reset = ResetMode::spike;
  cases.push_back(wide_recurrent);
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Sweep, CudaEqualsCpu, ::testing::ValuesIn(gpu_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Cuda, BuildAndAvailabilityAreReported) {
  // CMake tells the tests whether it built the backend (nvcc found): a CI build must have.
  EXPECT_EQ(build_info().cuda, SALTATORY_TEST_CUDA_BUILT != 0);
  const auto devices = available_devices();
  if (std::find(devices.begin(), devices.end(), "cuda") != devices.end()) return;
  Case c{"cuda", 4, 2, 10, {12}, 4, 0.3};
  Net net = make_net(c, Mode::sparse, 1);
  net.config.device = Device::cuda;
  const SpikeTensor input = make_input(c, 1);
  try {
    lif_stack_forward(net.config, net.params(), input.view());
    FAIL() << "cuda ran without a device";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda is not available"), std::string::npos) << e.what();
  }
}

// Lists that arrive in device memory (DLPack) skip the host's validation and are checked by the
// CUDA driver on the device: run here through the emulated grid, with one corruption at a time.
TEST(EmulatedCuda, ValidatesListsThatArriveInDeviceMemory) {
  Case c{"device_input", 6, 3, 12, {10}, 4, 0.3};
  Net net = make_net(c, Mode::sparse, 2);
  SpikeTensor input = make_input(c, 2);
  SpikeView view = input.view();
  view.on_device = true;
  auto cpu = lif_stack_forward(net.config, net.params(), input.view());
  expect_same_lists(emulated_forward(net.config, net.params(), view)->spikes[0], cpu->spikes[0],
                    "valid device lists");
  EXPECT_THROW(lif_stack_forward(net.config, net.params(), view), Error);  // cpu refuses them
  int t = 0, b = 0;  // a list with two entries
  while (input.n_tot(t, b) < 2)
    std::tie(t, b) = b + 1 < c.B ? std::pair{t, b + 1} : std::pair{t + 1, 0};
  const auto expect_error = [&](const std::string& needle) {
    try {
      emulated_forward(net.config, net.params(), view);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const int32_t first = input.list(t, b)[0], second = input.list(t, b)[1];
  input.list(t, b)[1] = c.n_in;
  expect_error("id 12 at [" + std::to_string(t) + ", " + std::to_string(b) + ", 1] is outside");
  input.list(t, b)[1] = first;
  expect_error("appears twice in list [" + std::to_string(t) + ", " + std::to_string(b) + "]");
  input.list(t, b)[1] = second;
  input.n_tot(t, b) = input.K() + 1;
  expect_error("counts at [" + std::to_string(t) + ", " + std::to_string(b) + "]");
}
