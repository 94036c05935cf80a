// Backend registry and the uniform "not implemented" defaults.
#include "saltatory/backend/backend.hpp"

#include "backends/cpu/cpu_backend.hpp"
#include "backends/optional.hpp"
#include "saltatory/core/error.hpp"

namespace saltatory {

std::shared_ptr<StackContext> Backend::lif_stack_forward(const StackConfig&,
                                                         const std::vector<LayerParams>&,
                                                         const SpikeView&) {
  throw Error("lif_stack_forward", "not implemented on " + name());
}

void Backend::lif_stack_backward(StackContext&, const std::vector<const float*>&,
                                 const std::vector<LayerGrads>&, float*) {
  throw Error("lif_stack_backward", "not implemented on " + name());
}

Backend& backend_for(Device device) {
  switch (device) {
    case Device::cuda: return cuda_backend();
    case Device::ipu_model: return ipu_model_backend();
    case Device::ipu: return poplar_backend();
    case Device::cpu:
    default: return cpu::cpu_backend();
  }
}

}  // namespace saltatory
