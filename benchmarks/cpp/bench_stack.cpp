// Google Benchmark of one whole training pass (forward + backward) of the shd-paper stack,
// 700-974-974-974-20, B = 48, T = 100, input capacity 48, hidden capacity 2 floor(a N / 2), output
// capacity 2, on random input lists, in sparse and dense mode. Args: activity a in per mille, mode
// (0 sparse, 1 dense). Counters: the measured hidden activity and samples per second.
// ShdPaperStepLearnable/<a> is ShdPaperStep/<a>/0 with learnable neuron parameters: per-neuron
// thresholds theta1 (all 1.0, the default) and gradient buffers for alpha and theta1, so backward
// also computes dL/dalpha and dL/dtheta1 (benchmarks/ab_step.py compares the two).
// ShdPaperStepNeuron/<a>/<model> is ShdPaperStep/<a>/0 with the hidden layers' neuron model
// (0 LIF, 1 CUBA, 2 ALIF, 3 adLIF) at the Python classes' defaults (alpha_syn 0.9, rho 0.98, b 1.8,
// a 0.5), fixed parameters: the per-neuron cost of each model against the LIF's.
// SingleLayerStep/<a>/<n>/<segment> is the shape of saltatory-bench's single-layer workload (one
// n -> n LIF layer, B = 16, T = 500) storing every membrane (segment 0) or recomputing them.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "saltatory/saltatory.hpp"

namespace sl = saltatory;

namespace {

// Fills every list (t, b) of `input` with K distinct random neuron ids of its N, ascending: all
// spikes, no candidates.
void fill_random_lists(sl::SpikeTensor& input, std::mt19937& rng) {
  std::vector<int32_t> all(input.N());
  std::iota(all.begin(), all.end(), 0);
  const int k = input.K();
  for (int t = 0; t < input.T(); ++t)
    for (int b = 0; b < input.B(); ++b) {
      std::shuffle(all.begin(), all.end(), rng);
      std::sort(all.begin(), all.begin() + k);
      std::copy_n(all.begin(), k, input.list(t, b));
      input.n_spk(t, b) = input.n_tot(t, b) = k;
    }
}

struct ShdStack {
  static constexpr int T = 100, B = 48, K_in = 48;
  const std::vector<int> sizes = {700, 974, 974, 974, 20};
  sl::StackConfig config;
  std::vector<std::vector<float>> weights, grads, alphas;
  // Learnable neuron parameters only: per-neuron thresholds and the alpha and theta1 gradients.
  std::vector<std::vector<float>> thresholds, alpha_grads, threshold_grads;
  // The other models' per-neuron parameters (alpha_syn, rho, b, a), those each hidden layer's reads.
  std::vector<std::vector<float>> model_params;
  std::vector<sl::LayerParams> params;
  std::vector<sl::LayerGrads> grad_refs;
  sl::SpikeTensor input{T, B, K_in, 700};

  ShdStack(double activity, sl::Mode mode, bool learnable = false,
           sl::kernels::neurons::Neuron neuron = sl::kernels::neurons::Neuron::lif) {
    std::mt19937 rng(11);
    config.mode = mode;
    for (size_t l = 0; l + 1 < sizes.size(); ++l) {
      sl::LayerConfig layer;
      layer.n_in = sizes[l];
      layer.n_out = sizes[l + 1];
      layer.capacity =
          l + 2 == sizes.size()
              ? 2
              : std::max(2, 2 * static_cast<int>(std::floor(activity * sizes[l + 1] / 2)));
      if (l + 2 < sizes.size()) layer.neuron = neuron;
      config.layers.push_back(layer);
      const float a = 2.0f * std::sqrt(6.0f / layer.n_in);
      std::uniform_real_distribution<float> u(-a, a);
      weights.emplace_back(static_cast<size_t>(layer.n_in) * layer.n_out);
      for (float& w : weights.back()) w = u(rng) + 0.001f;
      grads.emplace_back(weights.back().size(), 0.0f);
      alphas.emplace_back(layer.n_out, 0.95f);
    }
    for (size_t l = 0; l < weights.size(); ++l) {
      params.push_back({.weight = weights[l].data(), .alpha = alphas[l].data()});
      if (l + 1 < weights.size()) {  // hidden: the parameters of the model
        const auto n_out = static_cast<size_t>(config.layers[l].n_out);
        const auto per_neuron = [&](float value) {
          return model_params.emplace_back(n_out, value).data();
        };
        using sl::kernels::neurons::Neuron;
        sl::LayerParams& p = params.back();
        if (neuron == Neuron::cuba) p.alpha_syn = per_neuron(0.9f);
        if (neuron == Neuron::alif || neuron == Neuron::adlif) {
          p.rho = per_neuron(0.98f);
          p.b = per_neuron(1.8f);
        }
        if (neuron == Neuron::adlif) p.a = per_neuron(0.5f);
      }
      grad_refs.push_back({.weight = grads[l].data()});
      if (learnable) {
        const auto n_out = static_cast<size_t>(config.layers[l].n_out);
        thresholds.emplace_back(n_out, config.layers[l].theta1);
        alpha_grads.emplace_back(n_out, 0.0f);
        threshold_grads.emplace_back(n_out, 0.0f);
        params.back().theta1 = thresholds.back().data();
        grad_refs.back().alpha = alpha_grads.back().data();
        grad_refs.back().theta1 = threshold_grads.back().data();
      }
    }
    fill_random_lists(input, rng);
  }
};

// The timed loop of both benchmarks: forward and backward of the whole stack per iteration.
void RunSteps(benchmark::State& state, ShdStack& stack, const std::vector<float>& grad_out) {
  double activity = 0.0;
  for (auto _ : state) {
    auto ctx = sl::lif_stack_forward(stack.config, stack.params, stack.input.view());
    std::vector<const float*> grad_outputs(stack.params.size(), nullptr);
    grad_outputs.back() = grad_out.data();
    sl::lif_stack_backward(*ctx, grad_outputs, stack.grad_refs);
    activity = 0.0;
    for (int l = 0; l < 3; ++l)
      activity += static_cast<double>(ctx->spikes[l].total_spikes()) /
                  (ShdStack::T * ShdStack::B * stack.sizes[l + 1] * 3.0);
  }
  state.counters["hidden_activity"] = activity;
  state.counters["samples_per_s"] =
      benchmark::Counter(state.iterations() * ShdStack::B, benchmark::Counter::kIsRate);
}

void ShdPaperStep(benchmark::State& state) {
  ShdStack stack(state.range(0) / 1000.0, state.range(1) == 0 ? sl::Mode::sparse : sl::Mode::dense);
  std::vector<float> grad_out(
      static_cast<size_t>(ShdStack::T) * ShdStack::B * 2 * (state.range(1) == 0 ? 1 : 10), 0.01f);
  RunSteps(state, stack, grad_out);
}
BENCHMARK(ShdPaperStep)
    ->ArgsProduct({{10, 50, 200}, {0}})
    ->Args({50, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Sparse mode only; arg: activity a in per mille.
void ShdPaperStepLearnable(benchmark::State& state) {
  ShdStack stack(state.range(0) / 1000.0, sl::Mode::sparse, /*learnable=*/true);
  std::vector<float> grad_out(static_cast<size_t>(ShdStack::T) * ShdStack::B * 2, 0.01f);
  RunSteps(state, stack, grad_out);
}
BENCHMARK(ShdPaperStepLearnable)->Arg(10)->Arg(50)->Unit(benchmark::kMillisecond)->UseRealTime();

// Sparse mode only; args: activity a in per mille, the hidden neuron model (0-3, as Neuron).
void ShdPaperStepNeuron(benchmark::State& state) {
  ShdStack stack(state.range(0) / 1000.0, sl::Mode::sparse, /*learnable=*/false,
                 static_cast<sl::kernels::neurons::Neuron>(state.range(1)));
  std::vector<float> grad_out(static_cast<size_t>(ShdStack::T) * ShdStack::B * 2, 0.01f);
  RunSteps(state, stack, grad_out);
}
BENCHMARK(ShdPaperStepNeuron)
    ->ArgsProduct({{10, 50}, {0, 1, 2, 3}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The input gain that saltatory-bench's calibration gave single-layer at (a in per mille, n), for
// its own draw of the same weight distribution (the `gains` of
// benchmarks/results/recompute-single-rounds.json); the default gain elsewhere.
float single_layer_gain(int64_t per_mille, int64_t n) {
  if (n == 4096) return per_mille == 10 ? 10.37f : per_mille == 50 ? 6.78f : 10.0f;
  if (n == 8192) return per_mille == 10 ? 7.71f : per_mille == 50 ? 3.93f : 10.0f;
  return 10.0f;
}

// One feed-forward LIF layer n -> n, B = 16, T = 500 (saltatory-bench's single-layer: its gains,
// its input and list capacities 2 floor(a n / 2), but no loss or optimiser step), on random input
// lists; args: activity a in per mille, n, recompute segment (0: store every membrane; 16:
// saltatory-bench's "auto" for T = 500; 128). Counters: the measured output activity, the
// fraction of spikes dropped to capacity and samples per second. The C++ side of checkpointing in
// time's cost on single-layer.
void SingleLayerStep(benchmark::State& state) {
  constexpr int T = 500, B = 16;
  const double activity = state.range(0) / 1000.0;
  const int n = static_cast<int>(state.range(1));
  const int capacity = std::max(2, 2 * static_cast<int>(std::floor(activity * n / 2)));
  std::mt19937 rng(5);
  sl::StackConfig config;
  config.recompute_segment = static_cast<int>(state.range(2));
  sl::LayerConfig layer;
  layer.n_in = layer.n_out = n;
  layer.capacity = capacity;
  layer.gain = single_layer_gain(state.range(0), n);
  config.layers.push_back(layer);
  const float a = 2.0f * std::sqrt(6.0f / n);
  std::uniform_real_distribution<float> u(-a, a);
  std::vector<float> weight(static_cast<size_t>(n) * n), grad(weight.size()), alpha(n, 0.95f);
  for (float& w : weight) w = u(rng) + 0.001f;
  const std::vector<sl::LayerParams> params{{.weight = weight.data(), .alpha = alpha.data()}};
  const std::vector<sl::LayerGrads> grads{{.weight = grad.data()}};
  sl::SpikeTensor input{T, B, capacity, n};
  fill_random_lists(input, rng);
  const std::vector<float> grad_out(static_cast<size_t>(T) * B * layer.capacity, 1.0f);
  double out_activity = 0.0, dropped = 0.0;
  for (auto _ : state) {
    auto ctx = sl::lif_stack_forward(config, params, input.view());
    sl::lif_stack_backward(*ctx, {grad_out.data()}, grads);
    const auto spikes = static_cast<double>(ctx->spikes[0].total_spikes());
    out_activity = spikes / (T * B * double(n));
    const auto drops = static_cast<double>(ctx->dropped[0]);
    dropped = drops / std::max(1.0, spikes + drops);
  }
  state.counters["activity"] = out_activity;
  state.counters["dropped"] = dropped;
  state.counters["samples_per_s"] =
      benchmark::Counter(state.iterations() * B, benchmark::Counter::kIsRate);
}
BENCHMARK(SingleLayerStep)
    ->ArgsProduct({{10, 50}, {4096, 8192}, {0, 16, 128}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
