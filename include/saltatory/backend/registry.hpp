// The backends this library knows, one row per device. Adding a backend means its Device value,
// one row in src/backends/registry.cpp and its sources in CMake (with a stub when it is optional);
// parsing device names, available_devices() and dispatch all read the table.
#pragma once

#include <vector>

#include "saltatory/backend/backend.hpp"

namespace saltatory {

/// One device and how to reach its backend.
struct BackendEntry {
  Device device;
  const char* name;    ///< as Python and the command line spell it
  bool (*runnable)();  ///< whether this build can run it on this machine
  Backend& (*get)();   ///< the backend; throws Error saying why when it is not runnable
};

/// Every device, in order of preference ("cpu" first).
const std::vector<BackendEntry>& backend_registry();

}  // namespace saltatory
