// Stub of the Poplar part of the IPU backend (codelets, graph emitter, engines), built when the
// Poplar SDK is not found. The planner and the ipu-model interpreter are always built.
#include "backends/optional.hpp"
#include "saltatory/core/error.hpp"

namespace saltatory {

bool poplar_backend_built() { return false; }
bool ipu_device_present() { return false; }
Backend& poplar_backend() {
  throw Error("device",
              "ipu is not available: this build has no Poplar SDK (use ipu-model, which "
              "runs the tile plan on the host)");
}

}  // namespace saltatory
