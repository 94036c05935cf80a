// Stub of the CUDA backend for builds without CUDA (SALTATORY_ENABLE_CUDA=OFF).
#include "backends/optional.hpp"
#include "saltatory/core/error.hpp"

namespace saltatory {

bool cuda_backend_built() { return false; }
bool cuda_device_present() { return false; }
Backend& cuda_backend() {
  throw Error("device",
              "cuda is not available: this build has no CUDA backend "
              "(configure with -DSALTATORY_ENABLE_CUDA=ON)");
}

}  // namespace saltatory
