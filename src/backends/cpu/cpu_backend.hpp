// CPU backend (Eigen + oneTBB). Per layer, forward walks t = 0..T-1 and backward t = T-1..0;
// the stack driver (cpu_backend.cpp) chains layers and is shared by the sparse and dense modes.
// Layouts: membranes and current gradients [T, B, N]; entry gradients [T, B, K].
#pragma once

#include <memory>
#include <vector>

#include "backends/cpu/buffer_pool.hpp"
#include "saltatory/backend/backend.hpp"

namespace saltatory::cpu {

/// One layer's view of a forward/backward call.
struct LayerRun {
  const LayerConfig& config;
  const LayerParams& params;
  SpikeView input;      ///< the spikes this layer consumes
  int input_delay;      ///< 0, or 1 in delayed coupling: step t reads input step t - 1
  SpikeTensor* output;  ///< this layer's lists (null for a readout)
  float* membrane;      ///< V [T, B, n_out]
  uint64_t seed;        ///< stream seed of this layer's overflow policy
  OverflowPolicy overflow;
  int T, B;
};

/// Forward state the CPU keeps for backward.
class CpuContext : public StackContext {
 public:
  std::vector<LayerParams> params;
  SpikeTensor input;  ///< copy of the input lists
  /// Per spiking layer V [T, B, N]; uninitialised until the forward writes every element.
  std::vector<Buffer> membrane;
};

/// Runs one layer forward; returns the spikes dropped by capacity.
int64_t sparse_forward(const LayerRun& run);
int64_t dense_forward(const LayerRun& run);
/// Runs one layer backward. grad_output: [T, B, K_out] entries, or [T, B, N] for a readout.
/// grad_input: [T, B, K_in] entries to add into, or null.
void sparse_backward(const LayerRun& run, const float* grad_output, const LayerGrads& grads,
                     float* grad_input);
void dense_backward(const LayerRun& run, const float* grad_output, const LayerGrads& grads,
                    float* grad_input);

/// Per-thread scratch of the membrane update and selection of one layer.
struct SelectScratch {
  std::vector<float> flags;        ///< n zeros (spike reset footprint)
  std::vector<int32_t> found;      ///< 2 n (selection compaction)
  std::vector<uint64_t> priority;  ///< capacity (random overflow policy)
  SelectScratch(int n, int capacity) : flags(n, 0.0f), found(2 * n), priority(capacity) {}
};

/// Membrane update of one (t, b) row and, for spiking layers, selection into the output list.
/// Returns the spikes dropped by capacity.
int update_and_select(const LayerRun& run, int t, int b, const float* current,
                      SelectScratch& scratch);

/// Carried membrane gradient from step t+1 to t of one row: gV *= alpha (* (1 - r[t+1]) for mask).
void carry_membrane_grad(const LayerRun& run, int t, int b, float* gv, float* flags);

Backend& cpu_backend();

}  // namespace saltatory::cpu
