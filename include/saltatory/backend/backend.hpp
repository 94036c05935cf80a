// A backend: one virtual per coarse (whole-sequence) op. Missing ops throw
// "[op] not implemented on <backend>".
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "saltatory/ops/lif_stack.hpp"

namespace saltatory {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  /// Inputs are validated by the op layer before dispatch; `initial` (null: from rest) only
  /// reaches backends that continue sequences.
  virtual std::shared_ptr<StackContext> lif_stack_forward(const StackConfig& config,
                                                          const std::vector<LayerParams>& params,
                                                          const SpikeView& input,
                                                          const StackState* initial);
  virtual void lif_stack_backward(StackContext& context,
                                  const std::vector<const float*>& grad_outputs,
                                  const std::vector<LayerGrads>& grads, float* grad_input);
  /// Whether backward computes the gradients of the neuron models' per-neuron parameters
  /// (LayerGrads::alpha, ::theta1, ::alpha_syn, ::rho, ::b, ::a).
  virtual bool learns_neuron_parameters() const { return false; }
  /// Whether forward starts from an initial state and leaves StackContext::last_states.
  virtual bool continues_state() const { return false; }
};

/// The backend that runs `device`; throws Error if this build or machine cannot.
Backend& backend_for(Device device);

}  // namespace saltatory
