// lif_stack_forward / lif_stack_backward: validate, then dispatch to the device's backend.
#include "saltatory/ops/lif_stack.hpp"

#include <algorithm>
#include <cmath>

#include "backends/common/model.hpp"
#include "backends/common/order.hpp"
#include "saltatory/backend/backend.hpp"
#include "saltatory/core/error.hpp"
#include "saltatory/core/memory.hpp"

namespace saltatory {

namespace {

bool all_finite(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}

void validate_layer(const char* op, size_t l, const LayerConfig& c, const LayerParams& p, bool last,
                    Mode mode) {
  check(c.n_in > 0 && c.n_out > 0, op, "layer ", l, ": sizes ", c.n_in, " -> ", c.n_out,
        " must be positive");
  check(c.kind != LayerKind::readout || last, op, "layer ", l, ": a readout layer must be last");
  if (c.kind != LayerKind::readout) {
    check(mode == Mode::dense || c.capacity > 0, op, "layer ", l, ": capacity ", c.capacity,
          " must be positive");
    if (p.theta1 == nullptr)
      check(std::isfinite(c.theta1) && std::isfinite(c.theta2) && c.theta2 <= c.theta1, op,
            "layer ", l, ": thresholds must be finite with theta2 (", c.theta2, ") <= theta1 (",
            c.theta1, ")");
    else  // per neuron: a theta1_j below theta2 leaves neuron j no candidates, only spikes
      check(std::isfinite(c.theta2) && all_finite(p.theta1, c.n_out), op, "layer ", l,
            ": thresholds must be finite (theta2 ", c.theta2, ", theta1 per neuron)");
    check(std::isfinite(c.beta) && c.beta > 0, op, "layer ", l, ": surrogate slope ", c.beta,
          " must be positive");
  }
  check(std::isfinite(c.gain), op, "layer ", l, ": gain ", c.gain, " must be finite");
  const int64_t n_w = static_cast<int64_t>(c.n_in) * c.n_out;
  check(p.weight != nullptr && all_finite(p.weight, n_w), op, "layer ", l, ": weight [", c.n_in,
        ", ", c.n_out, "] is missing or not finite");
  check(p.alpha != nullptr, op, "layer ", l, ": alpha is missing");
  for (int j = 0; j < c.n_out; ++j)
    check(p.alpha[j] >= 0.0f && p.alpha[j] <= 1.0f, op, "layer ", l, ": alpha[", j,
          "] = ", p.alpha[j], " is outside [0, 1]");
  using kernels::neurons::Neuron;
  check(c.neuron == Neuron::lif || c.neuron == Neuron::cuba || c.neuron == Neuron::alif ||
            c.neuron == Neuron::adlif,
        op, "layer ", l, ": unknown neuron model ", static_cast<int>(c.neuron));
  check(c.neuron == Neuron::lif || c.kind != LayerKind::readout, op, "layer ", l,
        ": a readout is a LIF integrator; the other neuron models are for spiking layers");
  check(c.neuron == Neuron::lif || c.neuron == Neuron::cuba || c.reset != ResetMode::subtract, op,
        "layer ", l,
        ": the adaptive models reset to zero (reset state or spike), not by subtraction");
  // the model-specific per-neuron parameters (slots after alpha and theta1): present exactly when
  // the model reads them; decays in [0, 1], the others finite
  const kernels::neurons::Model model = common::layer_model(c, p);
  const char* names[kernels::neurons::kMaxParams] = {"alpha", "theta1", "alpha_syn",
                                                     "rho",   "b",      "a"};
  for (int i = kernels::neurons::p_alpha_syn; i < kernels::neurons::kMaxParams; ++i) {
    const float* values = model.params[i];
    const bool needed = model.uses(i),
               decay = i == kernels::neurons::p_alpha_syn || i == kernels::neurons::p_rho;
    check(needed == (values != nullptr), op, "layer ", l, ": ", names[i],
          needed ? " is missing (its neuron model needs it)"
                 : " does not belong to this neuron model");
    for (int j = 0; needed && j < c.n_out; ++j)
      check(decay ? values[j] >= 0.0f && values[j] <= 1.0f : std::isfinite(values[j]), op, "layer ",
            l, ": ", names[i], "[", j, "] = ", values[j],
            decay ? " is outside [0, 1]" : " is not finite");
  }
  if (c.kind == LayerKind::recurrent_lif)
    check(p.weight_rec != nullptr &&
              all_finite(p.weight_rec, static_cast<int64_t>(c.n_out) * c.n_out),
          op, "layer ", l, ": recurrent weight [", c.n_out, ", ", c.n_out,
          "] is missing or not finite");
  if (c.bias)
    check(p.bias != nullptr && all_finite(p.bias, c.n_out), op, "layer ", l,
          ": bias is missing or not finite");
}

/// Working memory of a forward (per layer: membrane history, spike lists and counts, and in dense
/// mode the dense spikes) or of a backward (per layer: current gradients and entry gradients), in
/// bytes; a lower bound that scales as the real allocations do. With a recompute window S < T the
/// membranes and current gradients of spiking layers shrink to about (2 S + T / S) rows of [B, N].
double working_bytes(const StackConfig& config, int T, int B, bool backward) {
  const bool windowed = config.device == Device::cpu || config.device == Device::cuda;
  const int S = windowed ? common::window_steps(config, T, B) : T;  // as the backend
  const int windows = (T + S - 1) / S;
  const double membrane_steps = S < T ? 2.0 * S + windows : T;
  double bytes = 0;
  for (const LayerConfig& c : config.layers) {
    const bool readout = c.kind == LayerKind::readout;
    const double K = readout ? 0.0 : (config.mode == Mode::dense ? c.n_out : c.capacity);
    bytes += static_cast<double>(T) * B * (K + 2.0);
    const int states = common::layer_model(c, LayerParams{}).states();
    bytes += (readout ? T : membrane_steps) * B * c.n_out * states;
    if (config.mode == Mode::dense && !backward) bytes += static_cast<double>(T) * B * c.n_out;
  }
  return 4.0 * bytes;
}

/// Checks that `s` is a state of this stack for a batch of B: per layer its model's states,
/// finite, and (spiking layers) one step of valid lists over its neurons.
void validate_state(const char* op, const StackConfig& config,
                    const std::vector<LayerParams>& params, const StackState& s, int B) {
  check(s.B == B, op, "the initial state is of a batch of ", s.B, ", the input of ", B);
  check(s.steps >= 0 && s.steps < (int64_t{1} << 62), op, "the initial state's step count ",
        s.steps, " is out of range");
  check(s.layers.size() == config.layers.size(), op, "the initial state has ", s.layers.size(),
        " layers, the stack ", config.layers.size());
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const LayerConfig& c = config.layers[l];
    const LayerState& ls = s.layers[l];
    const int states = common::layer_model(c, params[l]).states();
    check(ls.states.size() == static_cast<size_t>(states) * B * c.n_out, op, "layer ", l,
          ": the initial state holds ", ls.states.size(), " values, expected [", states, ", ", B,
          ", ", c.n_out, "] (the model's states)");
    check(all_finite(ls.states.data(), static_cast<int64_t>(ls.states.size())), op, "layer ", l,
          ": the initial state is not finite");
    const SpikeTensor& spikes = ls.spikes;
    const SpikeView view = spikes.view();
    if (c.kind == LayerKind::readout) {
      check(spikes.T() == 0, op, "layer ", l, ": a readout's initial state has no spikes");
      continue;
    }
    check(spikes.T() == 1 && spikes.B() == B && spikes.N() == c.n_out, op, "layer ", l,
          ": the initial spikes must be one step [1, ", B, ", K] over ", c.n_out, " neurons, got [",
          spikes.T(), ", ", spikes.B(), ", ", spikes.K(), "] over ", spikes.N());
    validate(view, op);
    const int width = config.mode == Mode::dense ? c.n_out : c.capacity;
    for (int b = 0; b < B; ++b)
      check(view.spikes(0, b) <= width, op, "layer ", l, ": the initial state lists ",
            view.spikes(0, b), " spikes of sample ", b, ", more than the layer's lists hold (",
            width, ")");
  }
}

}  // namespace

std::shared_ptr<StackContext> lif_stack_forward(const StackConfig& config,
                                                const std::vector<LayerParams>& params,
                                                const SpikeView& input, const StackState* initial) {
  const char* op = "lif_stack_forward";
  check(!config.layers.empty(), op, "the stack has no layers");
  check(config.recompute_segment >= 0, op, "recompute_segment ", config.recompute_segment,
        " must be 0 (store every membrane) or a positive number of steps");
  check(config.recompute_segment == 0 || config.mode == Mode::sparse, op,
        "recompute_segment needs sparse mode; the dense baseline stores every membrane");
  check(params.size() == config.layers.size(), op, "got parameters for ", params.size(),
        " layers, expected ", config.layers.size());
  check(input.T > 0 && input.B > 0 && input.K > 0 && input.N > 0, op,
        "input spike shape [T=", input.T, ", B=", input.B, ", K=", input.K, "] over N=", input.N,
        " must be positive");
  if (input.on_device)  // validated by the backend, where the lists are
    check(config.device == Device::cuda, op,
          "the input spikes are in CUDA memory, but the device is ", device_name(config.device),
          "; use device cuda or copy them to the host");
  else
    validate(input, op);
  for (size_t l = 0; l < config.layers.size(); ++l) {
    const int expected_in = l == 0 ? input.N : config.layers[l - 1].n_out;
    check(config.layers[l].n_in == expected_in, op, "layer ", l, " expects ", config.layers[l].n_in,
          " inputs but receives ", expected_in);
    validate_layer(op, l, config.layers[l], params[l], l + 1 == config.layers.size(), config.mode);
  }
  check(static_cast<int64_t>(input.T) * input.B * config.layers.back().n_out < (int64_t{1} << 40),
        op, "T*B*N is too large");
  check_memory(working_bytes(config, input.T, input.B, false), op, "the forward pass");
  Backend& backend = backend_for(config.device);
  if (initial != nullptr) {
    check(backend.continues_state(), op, "explicit state is not implemented on ", backend.name(),
          " (its Backend::continues_state() is false)");
    validate_state(op, config, params, *initial, input.B);
  }
  std::vector<std::vector<float>> thresholds;
  auto context = backend.lif_stack_forward(
      config, common::per_neuron_thresholds(config, params, thresholds), input, initial);
  context->first_step = initial != nullptr ? initial->steps : 0;
  context->input_capacity = input.K;
  context->thresholds = std::move(thresholds);
  return context;
}

StackState final_state(const StackContext& context) {
  const char* op = "final_state";
  const auto& layers = context.config.layers;
  check(context.last_states.size() == layers.size(), op, "the ", device_name(context.config.device),
        " backend does not keep the state");
  StackState s;
  s.steps = context.first_step + context.T;
  s.B = context.B;
  size_t spiking = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    LayerState& ls = s.layers.emplace_back();
    ls.states = context.last_states[l];
    if (layers[l].kind == LayerKind::readout) continue;
    const SpikeView all = context.spikes[spiking++].view();
    ls.spikes = SpikeTensor(1, context.B, all.K, all.N);
    for (int b = 0; b < context.B; ++b) {  // the spikes of the last step, candidates left out
      const int n = all.spikes(context.T - 1, b);
      std::copy_n(all.list(context.T - 1, b), n, ls.spikes.list(0, b));
      ls.spikes.n_spk(0, b) = n;
      ls.spikes.n_tot(0, b) = n;
    }
  }
  return s;
}

void lif_stack_backward(StackContext& context, const std::vector<const float*>& grad_outputs,
                        const std::vector<LayerGrads>& grads, float* grad_input) {
  const char* op = "lif_stack_backward";
  const auto& layers = context.config.layers;
  const char* consumed =
      "this forward context was already consumed by a backward call; run forward again";
  check(!context.backward_done, op, consumed);
  check(grad_outputs.size() == layers.size(), op, "got ", grad_outputs.size(),
        " output gradients, expected one (or null) per layer: ", layers.size());
  check(grads.size() == layers.size(), op, "got ", grads.size(), " gradient buffers, expected ",
        layers.size());
  Backend& backend = backend_for(context.config.device);
  for (size_t l = 0; l < grads.size(); ++l) {
    check(!common::learns(grads[l]) || backend.learns_neuron_parameters(), op,
          "learnable neuron parameters are not implemented on ", backend.name());
    const kernels::neurons::Model model = common::layer_model(layers[l], LayerParams{});
    const kernels::neurons::Params<float> wanted = common::neuron_grads(grads[l]);
    for (int i = 0; i < kernels::neurons::kMaxParams; ++i)
      check(wanted[i] == nullptr || model.uses(i), op, "layer ", l,
            ": a gradient was given for a parameter its neuron model does not have");
  }
  size_t spiking = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    const bool readout = layers[l].kind == LayerKind::readout;
    const int64_t width = readout ? layers[l].n_out : context.spikes[spiking].K();
    if (grad_outputs[l] != nullptr)
      check(all_finite(grad_outputs[l], static_cast<int64_t>(context.T) * context.B * width), op,
            "output gradient of layer ", l, " is not finite");
    if (!readout) ++spiking;
  }
  check_memory(working_bytes(context.config, context.T, context.B, true), op, "the backward pass");
  // Claimed atomically: of two threads that passed the check above, one runs and one throws. A
  // backend that fails part way leaves the context consumed (some gradients may have been added).
  check(!context.backward_done.exchange(true), op, consumed);
  backend.lif_stack_backward(context, grad_outputs, grads, grad_input);
}

}  // namespace saltatory
