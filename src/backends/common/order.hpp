// What every backend shares so that all of them sum in one order: the windows of a sequence, the
// weight-gradient chunks (whole steps, latest first) and the reduction of per-neuron parameter
// gradients over samples. Retuning one backend's loops must not change these.
//   window:  T steps, or the recompute segment S rounded up to whole chunks (T when S >= T)
//   chunk:   max(1, kScatterChunk / B) steps of lists, the unit of weight-gradient summation
// (The overflow streams, which device code needs too, are kernels::layer_seed and list_stream.)
#pragma once

#include <algorithm>
#include <cstdint>

#include "saltatory/ops/lif_stack.hpp"

namespace saltatory::common {

/// Steps [t0, t1) of a sequence.
struct Window {
  int t0, t1;
};

/// Lists per chunk of the weight-gradient gather (rounded down to whole steps, at least one). On
/// the CPU a chunk's current gradients in one column block (256 x 256 floats, 256 KB) stay in a
/// 512 KB L2 cache.
inline constexpr int32_t kScatterChunk = 256;

/// Steps per weight-gradient chunk of the sparse backward: kScatterChunk lists, in whole steps.
/// Recompute windows are multiples of it, so that chunks (and summation order) do not depend on
/// the window.
inline int scatter_chunk_steps(int B) { return std::max(1, kScatterChunk / B); }

/// Steps per window of a call: T, or the recompute segment rounded up to whole weight-gradient
/// chunks (T when that reaches T, or in dense mode).
inline int window_steps(const StackConfig& config, int T, int B) {
  const int segment = config.recompute_segment, chunk = scatter_chunk_steps(B);
  if (segment <= 0 || segment >= T || config.mode == Mode::dense) return T;
  return std::min(T, (segment + chunk - 1) / chunk * chunk);
}

/// out[j] += sum over samples b = 0, 1, ... of partial[b, j]: how every backend reduces the
/// per-sample partial sums (over t, latest first) of a per-neuron parameter's gradient.
inline void add_sample_sums(const float* partial, int B, int n, float* out) {
  if (partial == nullptr || out == nullptr) return;
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < n; ++j) out[j] += partial[static_cast<int64_t>(b) * n + j];
}

}  // namespace saltatory::common
