// The backend registry: every device, how to tell whether it can run here, and its backend.
#include "saltatory/backend/registry.hpp"

#include "backends/cpu/cpu_backend.hpp"
#include "backends/optional.hpp"
#include "saltatory/core/error.hpp"

namespace saltatory {

namespace {

bool always() { return true; }

}  // namespace

const std::vector<BackendEntry>& backend_registry() {
  static const std::vector<BackendEntry> entries{
      {Device::cpu, "cpu", &always, &cpu::cpu_backend},
      {Device::cuda, "cuda", &cuda_device_present, &cuda_backend},
      {Device::ipu_model, "ipu-model", &always, &ipu_model_backend},  // the plan, on the host
      {Device::ipu, "ipu", &ipu_device_present, &poplar_backend},
  };
  return entries;
}

Backend& backend_for(Device device) {
  for (const BackendEntry& entry : backend_registry())
    if (entry.device == device) return entry.get();
  throw Error("device", "no backend is registered for this device");
}

}  // namespace saltatory
