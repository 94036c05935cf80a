// Device names, availability and build facts.
#include "saltatory/core/device.hpp"

#include <tbb/global_control.h>
#include <tbb/info.h>

#include <memory>

#include "backends/optional.hpp"
#include "saltatory/backend/registry.hpp"
#include "saltatory/core/error.hpp"

namespace saltatory {

Device parse_device(const std::string& name) {
  std::string known;
  for (const BackendEntry& entry : backend_registry()) {
    if (name == entry.name) return entry.device;
    known += std::string(known.empty() ? "" : ", ") + entry.name;
  }
  throw Error("device", "unknown device '" + name + "' (expected one of " + known + ")");
}

std::string device_name(Device device) {
  for (const BackendEntry& entry : backend_registry())
    if (entry.device == device) return entry.name;
  return "unknown";
}

std::vector<std::string> available_devices() {
  std::vector<std::string> devices;
  for (const BackendEntry& entry : backend_registry())
    if (entry.runnable()) devices.emplace_back(entry.name);
  return devices;
}

BuildInfo build_info() {
  BuildInfo info;
  info.version = SALTATORY_VERSION;
#if defined(__clang__)
  info.compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
  info.compiler = "gcc " __VERSION__;
#endif
  info.cuda = cuda_backend_built();
  info.poplar = poplar_backend_built();
  info.cpu_threads = static_cast<int>(  // the set_num_threads cap, if any
      tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
  return info;
}

void set_num_threads(int n) {
  static std::unique_ptr<tbb::global_control> limit;
  check(n >= 0, "set_num_threads", "thread count ", n, " must be non-negative");
  limit.reset();
  if (n > 0)
    limit = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism, n);
}

}  // namespace saltatory
