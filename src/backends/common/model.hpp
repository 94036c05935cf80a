// The neuron model of a layer (kernels/neurons/lif.hpp) from its configuration and parameters:
// how the host backends hand a layer to the shared model code. Parameter pointers must be the
// normalised ones of the op layer (per-neuron theta1 always present for spiking layers).
#pragma once

#include <vector>

#include "backends/common/order.hpp"
#include "saltatory/kernels/neurons/lif.hpp"
#include "saltatory/ops/lif_stack.hpp"

namespace saltatory::common {

inline kernels::neurons::Lif lif_model(const LayerConfig& c, const float* alpha,
                                       const float* theta1) {
  return {alpha,   theta1,       c.theta2,
          c.gain,  c.beta,       c.surrogate,
          c.reset, c.reset_grad, c.kind == LayerKind::readout};
}

inline kernels::neurons::Lif lif_model(const LayerConfig& c, const LayerParams& p) {
  return lif_model(c, p.alpha, p.theta1);
}

/// Adds the model's parameter gradients (`grads.alpha`, `grads.theta1`; either may be null) from
/// per-sample sums [kSums, B, n]: each sum is added over samples in add_sample_sums' order, then
/// the model combines them per neuron. How every host backend finishes the per-neuron gradients.
inline void add_parameter_grads(const kernels::neurons::Lif& m, const float* partial, int B, int n,
                                const LayerGrads& grads) {
  using kernels::neurons::Lif;
  std::vector<float> sums(static_cast<size_t>(Lif::kSums) * n, 0.0f);
  for (int i = 0; i < Lif::kSums; ++i)
    add_sample_sums(partial + static_cast<int64_t>(i) * B * n, B, n, sums.data() + i * n);
  for (int j = 0; j < n; ++j)
    kernels::neurons::add_parameter_grads(m, j, sums.data(), n, grads.alpha, grads.theta1);
}

/// Whether backward keeps the per-neuron parameter sums of a layer (a parameter is learnable).
inline bool learns(const LayerGrads& grads) {
  return grads.alpha != nullptr || grads.theta1 != nullptr;
}

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
