// The neuron model of a layer (kernels/neurons/model.hpp) from its configuration and parameters,
// and its parameter gradients: the one place that maps the op layer's per-neuron parameters to a
// model's, for every backend. Parameter pointers must be the normalised ones of the op layer
// (per-neuron theta1 always present for spiking layers).
#pragma once

#include <vector>

#include "backends/common/order.hpp"
#include "saltatory/kernels/neurons/model.hpp"
#include "saltatory/ops/lif_stack.hpp"

namespace saltatory::common {

using kernels::neurons::Model;

/// The model's per-neuron parameters of a layer, by slot (kernels/neurons/rows.hpp).
SALTATORY_HD kernels::neurons::Params<const float> neuron_params(const LayerParams& p) {
  return {{p.alpha, p.theta1, p.alpha_syn, p.rho, p.b, p.a}};
}
/// The gradient buffers of those parameters, in the same order.
inline kernels::neurons::Params<float> neuron_grads(const LayerGrads& g) {
  return {{g.alpha, g.theta1, g.alpha_syn, g.rho, g.b, g.a}};
}

/// The model of a layer over per-neuron parameters (host or device memory).
SALTATORY_HD Model layer_model(const LayerConfig& c, kernels::neurons::Params<const float> p) {
  return {
      c.neuron,
      p,
      {c.theta2, c.gain, c.beta, c.surrogate, c.reset, c.reset_grad, c.kind == LayerKind::readout}};
}

inline Model layer_model(const LayerConfig& c, const LayerParams& p) {
  return layer_model(c, neuron_params(p));
}

/// Adds the model's parameter gradients (`grads`' per-neuron ones; each may be null) from
/// per-sample sums [sums(), B, n]: each sum is added over samples in add_sample_sums' order, then
/// the model combines them per neuron. How every host backend finishes the per-neuron gradients.
inline void add_parameter_grads(const Model& m, const float* partial, int B, int n,
                                const LayerGrads& grads) {
  const int count = m.sums();
  std::vector<float> sums(static_cast<size_t>(count) * n, 0.0f);
  for (int i = 0; i < count; ++i)
    add_sample_sums(partial + static_cast<int64_t>(i) * B * n, B, n, sums.data() + i * n);
  for (int j = 0; j < n; ++j)
    kernels::neurons::add_parameter_grads(m, j, sums.data(), n, neuron_grads(grads));
}

/// Whether backward keeps the per-neuron parameter sums of a layer (a parameter is learnable).
inline bool learns(const LayerGrads& grads) { return neuron_grads(grads).any(); }

/// `params` with theta1 per neuron for every spiking layer (what backends read): layers given
/// none point into `thresholds`, which receives config.theta1 for each of their neurons and must
/// outlive the parameters (moving it keeps the arrays where they are).
inline std::vector<LayerParams> per_neuron_thresholds(const StackConfig& config,
                                                      const std::vector<LayerParams>& params,
                                                      std::vector<std::vector<float>>& thresholds) {
  std::vector<LayerParams> out = params;
  thresholds.assign(params.size(), {});
  for (size_t l = 0; l < params.size(); ++l) {
    const LayerConfig& c = config.layers[l];
    if (c.kind == LayerKind::readout || params[l].theta1 != nullptr) continue;
    thresholds[l].assign(c.n_out, c.theta1);
    out[l].theta1 = thresholds[l].data();
  }
  return out;
}

}  // namespace saltatory::common
