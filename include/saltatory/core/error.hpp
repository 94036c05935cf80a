// Errors that name their op: "[lif_forward] capacity 0 must be positive".
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace saltatory {

/// Invalid input to a public op. Python sees it as ValueError.
class Error : public std::invalid_argument {
 public:
  Error(const std::string& op, const std::string& message)
      : std::invalid_argument("[" + op + "] " + message) {}
};

/// A device or runtime failure (a CUDA error, device memory exhausted). Python sees RuntimeError.
class DeviceError : public std::runtime_error {
 public:
  DeviceError(const std::string& op, const std::string& message)
      : std::runtime_error("[" + op + "] " + message) {}
};

/// Throws Error(op, message) unless `condition` holds. `message` is built only on failure.
template <class... Parts>
void check(bool condition, const char* op, const Parts&... parts) {
  if (condition) return;
  std::ostringstream message;
  (message << ... << parts);
  throw Error(op, message.str());
}

}  // namespace saltatory
