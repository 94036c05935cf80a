// Whole-sequence forward and backward through a stack of LIF layers (optionally ending in a
// leaky-integrator readout). Shapes: input spikes [T, B, K_0] over N_0 neurons; layer l has input-
// major weights W [N_in, N_out], optional recurrent W_rec [N_out, N_out] fed by its own spikes of
// t-1, optional bias [N_out], per-neuron alpha [N_out].
//   I[t] = bias + sum_{k < n_spk(S_in[t'])} W[ids_k, :] + sum_{k < n_spk(S[t-1])} W_rec[ids_k, :]
//   t' = t (same_step coupling, and always for layer 0) or t - 1 (delayed coupling)
//   V[t] = alpha V[t-1] (1 - r[t]) + g (1 - alpha) I[t];   S[t] = select(V[t], theta1, theta2, K)
// Readout: V[t] = alpha V[t-1] + g (1 - alpha) I[t], output is V [T, B, N_out].
// Backward is BPTT with surrogate gradients on listed entries only (docs/method.md, section 5).
// A call may continue a sequence from a StackState (V[-1], S[-1] and the delayed input of step -1
// are then the state's, not zero); its backward is truncated at step 0.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "saltatory/core/device.hpp"
#include "saltatory/core/spikes.hpp"
#include "saltatory/kernels/lif.hpp"
#include "saltatory/kernels/neurons/model.hpp"
#include "saltatory/kernels/surrogate.hpp"

namespace saltatory {

using kernels::ResetGrad;
using kernels::ResetMode;
using kernels::Surrogate;

/// Layer types of a stack.
enum class LayerKind { lif, recurrent_lif, readout };
/// Whether layer l consumes layer l-1's spikes of the same step or of the previous step.
enum class Coupling { same_step, delayed };

/// Static description of one layer.
struct LayerConfig {
  LayerKind kind = LayerKind::lif;
  /// The neuron model of the layer's units (kernels/neurons/model.hpp).
  kernels::neurons::Neuron neuron = kernels::neurons::Neuron::lif;
  int n_in = 0;
  int n_out = 0;
  int capacity = 0;     ///< list capacity K (spiking layers; ignored by readout)
  float theta1 = 1.0f;  ///< spike threshold
  float theta2 = 0.9f;  ///< gradient-candidate threshold (<= theta1), changeable between calls
  float gain = 10.0f;   ///< input gain g
  Surrogate surrogate = Surrogate::super_spike;
  float beta = 10.0f;  ///< surrogate slope
  ResetMode reset = ResetMode::state;
  ResetGrad reset_grad = ResetGrad::pass;
  bool bias = false;
};

/// The whole stack and how to run it.
struct StackConfig {
  std::vector<LayerConfig> layers;
  Coupling coupling = Coupling::same_step;
  Mode mode = Mode::sparse;
  /// Which spikes and candidates a full list keeps: a seeded random subset (default, unbiased) or
  /// the lowest ids (the paper's choice, which starves high ids of gradient).
  OverflowPolicy overflow = OverflowPolicy::random;
  uint64_t seed = 0;  ///< for the random overflow policy
  Device device = Device::cpu;
  /// Checkpointing in time (sparse mode). 0 stores every membrane V [T, B, N] for backward.
  /// S > 0 stores only the spike lists and one membrane row per S steps; backward recomputes the
  /// membranes S steps at a time from them. Gradients are bitwise those of the stored path. The
  /// CPU rounds S up to a multiple of max(1, 256 / B) steps, its weight-gradient chunk.
  int recompute_segment = 0;
};

/// Parameters of one layer (borrowed; must outlive the context and stay unchanged until backward).
struct LayerParams {
  const float* weight = nullptr;      ///< [n_in, n_out]
  const float* weight_rec = nullptr;  ///< [n_out, n_out], recurrent layers only
  const float* bias = nullptr;        ///< [n_out] when config.bias
  const float* alpha = nullptr;       ///< [n_out], in [0, 1]
  /// [n_out] spike thresholds, one per neuron (spiking layers); null: config.theta1 for all.
  const float* theta1 = nullptr;
  const float* alpha_syn = nullptr;  ///< [n_out] synaptic decay in [0, 1] (cuba layers only)
  const float* rho = nullptr;        ///< [n_out] adaptation decay in [0, 1] (alif, adlif only)
  const float* b = nullptr;          ///< [n_out] adaptation per spike, finite (alif, adlif only)
  const float* a = nullptr;          ///< [n_out] subthreshold adaptation, finite (adlif only)
};

/// Gradient buffers of one layer; backward adds into them. Null skips that gradient.
struct LayerGrads {
  float* weight = nullptr;
  float* weight_rec = nullptr;
  float* bias = nullptr;
  float* alpha = nullptr;      ///< [n_out]: learnable decay
  float* theta1 = nullptr;     ///< [n_out]: learnable spike thresholds (spiking layers)
  float* alpha_syn = nullptr;  ///< [n_out]: learnable synaptic decay (cuba layers)
  float* rho = nullptr;        ///< [n_out]: learnable adaptation decay (alif, adlif layers)
  float* b = nullptr;          ///< [n_out]: learnable adaptation per spike (alif, adlif layers)
  float* a = nullptr;          ///< [n_out]: learnable subthreshold adaptation (adlif layers)
};

/// One layer's state between two calls over consecutive chunks of a sequence: what its next step
/// reads of its last one.
struct LayerState {
  /// [states, B, n_out]: the neuron model's state variables at the last step, V (or the ALIF's
  /// u = V - b a) first, in the order of the model's unit (kernels/neurons/).
  std::vector<float> states;
  /// The spikes emitted at the last step (T = 1; spiking layers only, empty for a readout): the
  /// next step's recurrent input, spike reset and adaptation, and the next layer's delayed input.
  SpikeTensor spikes;
};

/// The state of a whole stack after `steps` steps of a sequence. A forward that starts from it
/// continues the sequence: forwards over consecutive chunks equal one forward over the whole
/// sequence, bit for bit. Backward treats it as a constant (truncated BPTT): gradients stop at the
/// chunk's first step, though the direct terms of its parameters (W_rec times the initial spikes,
/// alpha times the initial membrane) are kept.
struct StackState {
  int64_t steps = 0;  ///< steps run before; the random overflow policy's streams continue from it
  int B = 0;
  std::vector<LayerState> layers;  ///< one per layer
};

/// What forward produced; backend subclasses keep what backward needs. Opaque to Python.
class StackContext {
 public:
  virtual ~StackContext() = default;
  StackConfig config;
  int T = 0, B = 0;
  int input_capacity = 0;           ///< K of the input lists
  std::vector<SpikeTensor> spikes;  ///< per spiking layer (dense mode: capacity N, never overflows)
  std::vector<float> readout;       ///< [T, B, N_out] of the readout layer, if any
  std::vector<int64_t> dropped;     ///< spikes dropped by capacity, per spiking layer
  std::vector<int64_t> dropped_candidates;  ///< gradient candidates dropped, per spiking layer
  /// Per layer, theta1 for every neuron made from config.theta1 when the caller gave no
  /// per-neuron thresholds (the backend's parameters point into these arrays).
  std::vector<std::vector<float>> thresholds;
  /// The initial state's steps (0 without one): the absolute step of this call's step 0.
  int64_t first_step = 0;
  /// Per layer, the model's states [states, B, n_out] at the last step, written by backends that
  /// continue sequences (Backend::continues_state); empty on the others.
  std::vector<std::vector<float>> last_states;
  /// Set (atomically) by the backward call that consumes the context; one backward per forward,
  /// also when several threads try at once.
  std::atomic<bool> backward_done{false};

  /// Layer l's model states of every step, [states, T, B, n_out] (V, or the ALIF's u, first), on
  /// backends that keep them for backward (the cpu without checkpointing in time, the ipu-model);
  /// empty where they are not kept.
  virtual std::vector<float> stored_states(size_t /*l*/) const { return {}; }

  /// Records the drops of the spiking layer whose lists were just appended to `spikes`.
  void add_dropped(Drops d) {
    spikes.back().set_dropped(d);
    dropped.push_back(d.spikes);
    dropped_candidates.push_back(d.candidates);
  }
};

/// Runs the stack forward over all T steps, from rest or continuing from `initial` (which must fit
/// the stack and batch). Validates shapes, parameters, input spikes and the state.
std::shared_ptr<StackContext> lif_stack_forward(const StackConfig& config,
                                                const std::vector<LayerParams>& params,
                                                const SpikeView& input,
                                                const StackState* initial = nullptr);

/// The state after the last step of `context`'s forward, from which a forward over the next chunk
/// continues the sequence. Throws on a backend that does not continue sequences.
StackState final_state(const StackContext& context);

/// BPTT through the whole sequence. `grad_outputs[l]` is dL/d(output of layer l): per list entry
/// [T, B, K_l] for a spiking layer, [T, B, N_out] for the readout; null means zero. Gradients are
/// added into `grads`; `grad_input` (optional) receives dL/d(entries of the input) [T, B, K_0].
/// A context can be consumed once: a second call, also from another thread at the same time,
/// throws. Calls that fail validation leave it unconsumed.
void lif_stack_backward(StackContext& context, const std::vector<const float*>& grad_outputs,
                        const std::vector<LayerGrads>& grads, float* grad_input = nullptr);

}  // namespace saltatory
