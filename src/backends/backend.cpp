// The uniform "not implemented" defaults of a backend's ops.
#include "saltatory/backend/backend.hpp"

#include "saltatory/core/error.hpp"

namespace saltatory {

std::shared_ptr<StackContext> Backend::lif_stack_forward(const StackConfig&,
                                                         const std::vector<LayerParams>&,
                                                         const SpikeView&, const StackState*) {
  throw Error("lif_stack_forward", "not implemented on " + name());
}

void Backend::lif_stack_backward(StackContext&, const std::vector<const float*>&,
                                 const std::vector<LayerGrads>&, float*) {
  throw Error("lif_stack_backward", "not implemented on " + name());
}

}  // namespace saltatory
