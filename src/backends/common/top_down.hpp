// The top-down BPTT driver every backend shares: layers are visited L-1 .. 0, each turning the
// gradients of its outputs (the caller's plus what the layer above sent down) into gradients of
// its input entries, so that every backend adds the same terms in the same order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "saltatory/ops/lif_stack.hpp"

namespace saltatory::common {

/// Calls f(l, grad_out, below) for l = L-1 .. 0, where grad_out is dL/d(layer l's outputs) (the
/// caller's, plus what layer l + 1 added) and below receives dL/d(layer l's input entries),
/// starting from the caller's gradient of layer l - 1; for layer 0 it is grad_input (zeroed), or
/// null.
template <class F>
void backward_top_down(const StackContext& ctx, const std::vector<const float*>& grad_outputs,
                       float* grad_input, int input_capacity, F&& f) {
  const auto& layers = ctx.config.layers;
  const int64_t lists = static_cast<int64_t>(ctx.T) * ctx.B;
  const auto width = [&](size_t l) {
    return layers[l].kind == LayerKind::readout ? layers[l].n_out : ctx.spikes[l].K();
  };
  const auto callers = [&](size_t l, std::vector<float>& grad) {
    grad.assign(lists * width(l), 0.0f);
    if (grad_outputs[l] != nullptr) std::copy_n(grad_outputs[l], grad.size(), grad.begin());
  };
  std::vector<float> grad_out, grad_in;
  callers(layers.size() - 1, grad_out);
  for (size_t l = layers.size(); l-- > 0;) {
    float* below = nullptr;
    if (l > 0) {
      callers(l - 1, grad_in);
      below = grad_in.data();
    } else if (grad_input != nullptr) {
      std::fill_n(grad_input, lists * input_capacity, 0.0f);
      below = grad_input;
    }
    f(l, static_cast<const float*>(grad_out.data()), below);
    std::swap(grad_out, grad_in);
  }
}

}  // namespace saltatory::common
