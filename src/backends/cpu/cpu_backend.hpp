// CPU backend (oneTBB). Per layer, forward walks t = 0..T-1 and backward t = T-1..0;
// the stack driver (cpu_backend.cpp) chains layers and is shared by the sparse and dense modes.
// Layouts: membranes and current gradients [T, B, N]; entry gradients [T, B, K].
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "backends/common/history.hpp"
#include "backends/common/model.hpp"
#include "backends/common/order.hpp"
#include "backends/cpu/buffer_pool.hpp"
#include "saltatory/backend/backend.hpp"

namespace saltatory::cpu {

using common::Window;

/// One layer's view of a forward/backward call.
struct LayerRun {
  const LayerConfig& config;
  const LayerParams& params;
  SpikeView input;      ///< the spikes this layer consumes
  int input_delay;      ///< 0, or 1 in delayed coupling: step t reads input step t - 1
  SpikeTensor* output;  ///< this layer's lists (null for a readout)
  /// The model's state rows of steps first_step, first_step + 1, ... (each [B, n_out]), one block
  /// per state variable, `state_stride` floats apart; the first is V.
  float* state;
  int64_t state_stride;
  int first_step;  ///< 0 for a whole-sequence buffer, t0 - 1 for a window's buffer
  uint64_t seed;   ///< stream seed of this layer's overflow policy
  OverflowPolicy overflow;
  int T, B;
  /// The layer's state before step 0 (null: the call starts from rest), and the input's spikes of
  /// step -1 that delayed coupling reads (T = 0 when none).
  const LayerState* initial = nullptr;
  SpikeView input_before{};
  int64_t steps_before = 0;  ///< the absolute step of step 0 (the overflow streams continue)
  /// The membrane at every entry of this layer's lists, [T, B, K] (null: not kept). The forward's
  /// selection writes it. A backward that reads nothing else of the states is given it and no
  /// state buffer (`state` null), and reads it in place of the states.
  float* listed = nullptr;
  /// The layer's neuron model (made once: the step loops ask for it per row).
  kernels::neurons::Model neuron_model = common::layer_model(config, params);

  /// Whether step t - 1 exists: t > 0, or t = 0 continuing from an initial state.
  bool has_prev(int t) const { return t > 0 || initial != nullptr; }
  /// The input's lists, with the initial state's of step -1.
  common::SpikeHistory input_history() const { return {input, input_before}; }
  /// This layer's own lists (spiking layers), with the initial state's of step -1.
  common::SpikeHistory own_history() const {
    return {output->view(), initial != nullptr ? initial->spikes.view() : SpikeView{}};
  }

  /// V[t, b, :]; forward only (a backward that reads `listed` has no state buffer)
  float* v(int t, int b) const {
    return state + (static_cast<int64_t>(t - first_step) * B + b) * config.n_out;
  }
  /// The state rows of (t, b); before the buffer's first step, the initial state's.
  kernels::neurons::Rows states(int t, int b) const {
    if (state == nullptr) return {};  // not kept: backward reads `listed`
    if (t < first_step)
      return kernels::neurons::Rows::strided(
          const_cast<float*>(initial->states.data()) + static_cast<int64_t>(b) * config.n_out,
          static_cast<int64_t>(B) * config.n_out, neuron_model.states());
    return kernels::neurons::Rows::strided(v(t, b), state_stride, neuron_model.states());
  }
  /// The layer's neuron model.
  const kernels::neurons::Model& model() const { return neuron_model; }
};

/// What the sparse backward carries from one window to the earlier one, per sample b (the dense
/// backward keeps the same adjoints and sums over the whole sequence).
struct BackwardCarry {
  std::vector<float>
      adjoints;  ///< the model's adjoints [adjoints(), B, n_out] entering step t1 - 1
  std::vector<float> grad_rec;  ///< [B, K]: gradients of the entries of S[t1 - 1] sent back
                                ///< through W_rec by step t1 (recurrent layers)
  /// The model's per-sample parameter sums over the steps so far [sums(), B, n_out] (empty unless
  /// a parameter is learnable), reduced over samples after the last window.
  std::vector<float> sums;

  /// Zeros for model m over `row` = B n_out floats a variable, with `grad_rec` floats for
  /// the recurrence and the sums when `keep_sums`.
  BackwardCarry(const kernels::neurons::Model& m, int64_t row, int64_t grad_rec, bool keep_sums)
      : adjoints(m.adjoints() * row, 0.0f),
        grad_rec(grad_rec, 0.0f),
        sums(keep_sums ? m.sums() * row : 0, 0.0f),
        adjoint_count_(m.adjoints()),
        sum_count_(m.sums()) {}

  /// Sample b's rows (each set holds its variables [B, n] apart).
  kernels::neurons::Rows adjoint_rows(int64_t b, int n) {
    return rows(adjoints, b, n, adjoint_count_);
  }
  kernels::neurons::Rows sum_rows(int64_t b, int n) { return rows(sums, b, n, sum_count_); }

 private:
  int adjoint_count_, sum_count_;
  static kernels::neurons::Rows rows(std::vector<float>& set, int64_t b, int n, int count) {
    if (set.empty()) return {};
    return kernels::neurons::Rows::strided(set.data() + b * n,
                                           static_cast<int64_t>(set.size()) / count, count);
  }
};

/// Forward state the CPU keeps for backward.
class CpuContext : public StackContext {
 public:
  std::vector<LayerParams> params;
  SpikeTensor input;  ///< copy of the input lists
  /// Steps per window: T when every membrane is stored, else the recompute segment.
  int window = 0;
  /// Per spiking layer, the model's states [states(), T, B, N] when stored; else the states at the
  /// last step of every window but the last, [states(), windows - 1, B, N]. Uninitialised until
  /// the forward writes every element.
  std::vector<Buffer> state;
  /// Per spiking layer whose states are recomputed and whose model's carry reads no state, its
  /// membrane at every list entry [T, B, K] (LayerRun::listed); empty for the others.
  std::vector<Buffer> listed;
  /// A copy of the state the forward continued from (null: from rest); backward reads it too.
  std::unique_ptr<const StackState> initial;

  std::vector<float> stored_states(size_t l) const override {
    if (window < T && config.layers[l].kind != LayerKind::readout) return {};  // recomputed
    const size_t n =
        static_cast<size_t>(common::layer_model(config.layers[l], params[l]).states()) * T * B *
        config.layers[l].n_out;
    return {state[l].get(), state[l].get() + n};
  }
};

/// Runs steps [w.t0, w.t1) of one sparse layer forward, reading V[w.t0 - 1] from the membrane
/// buffer; returns the entries dropped by capacity. With `select` false it only recomputes the
/// membranes of lists already selected (bitwise those of the forward).
Drops sparse_forward(const LayerRun& run, Window w, bool select);
Drops dense_forward(const LayerRun& run);
/// Runs steps [w.t1 - 1 .. w.t0] of one sparse layer backward, taking `carry` from step w.t1 and
/// leaving it for step w.t0 - 1. grad_output: [T, B, K_out] entries, or [T, B, N] for a readout;
/// grad_input: [T, B, K_in] entries to add into, or null; grad_current: scratch of
/// (w.t1 - w.t0) * B * n_out floats. Weight gradients are summed chunk by chunk, latest first.
void sparse_backward(const LayerRun& run, Window w, const float* grad_output,
                     const LayerGrads& grads, float* grad_input, BackwardCarry& carry,
                     float* grad_current);
void dense_backward(const LayerRun& run, const float* grad_output, const LayerGrads& grads,
                    float* grad_input);

/// Per-thread scratch of the membrane update and selection of one layer.
struct SelectScratch {
  std::vector<float> flags;        ///< n zeros (spike reset footprint)
  std::vector<int32_t> found;      ///< 2 n (selection compaction)
  std::vector<uint64_t> priority;  ///< capacity (random overflow policy)
  SelectScratch(int n, int capacity) : flags(n, 0.0f), found(2 * n), priority(capacity) {}
};

/// Membrane update of one (t, b) row and, for spiking layers when `select`, selection into the
/// output list. Returns the entries dropped by capacity.
Drops update_and_select(const LayerRun& run, int t, int b, const float* current,
                        SelectScratch& scratch, bool select);

/// The model's adjoints of one row carried from step t+1 to t (gV *= alpha, or alpha (1 - r[t+1])
/// for mask); `flags` is n zeros of scratch (left zero).
void carry_adjoints(const LayerRun& run, int t, int b, kernels::neurons::Rows g, float* flags);

/// Asks the cache for n floats from `row`, one request per 64 bytes.
inline void prefetch_row(const float* row, int n) {
  constexpr int kLine = 64 / sizeof(float);
  for (int j = 0; j < n; j += kLine) __builtin_prefetch(row + j);
}

/// Asks the cache for the n floats of every row of `rows` (a stride back in time defeats the
/// hardware prefetcher at the start of each row).
inline void prefetch_rows(kernels::neurons::Rows rows, int n) {
  for (int i = 0; i < kernels::neurons::kMaxRows && rows[i] != nullptr; ++i)
    prefetch_row(rows[i], n);
}

/// Adds step t's direct terms to the model's parameter sums of one row, from its complete
/// adjoints; `flags` is n zeros of scratch (left zero).
void parameter_sums(const LayerRun& run, int t, int b, kernels::neurons::Rows sums,
                    kernels::neurons::Rows g, float* flags);

Backend& cpu_backend();

}  // namespace saltatory::cpu
