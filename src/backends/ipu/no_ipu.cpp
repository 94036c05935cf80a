// Stub of the IPU backend (tile planner, interpreter and Poplar emitter are not built yet).
#include "backends/optional.hpp"
#include "saltatory/core/error.hpp"

namespace saltatory {

bool poplar_backend_built() { return false; }
bool ipu_model_built() { return false; }
bool ipu_device_present() { return false; }
Backend& ipu_backend(Device device) {
  throw Error("device", device_name(device) + " is not available: this build has no IPU backend");
}

}  // namespace saltatory
