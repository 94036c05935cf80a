// Devices a computation can run on, and which of them this build and machine can run.
#pragma once

#include <string>
#include <vector>

namespace saltatory {

/// Execution devices. `ipu_model` interprets the IPU tile plan on the host.
enum class Device { cpu, cuda, ipu_model, ipu };

/// Parses "cpu", "cuda", "ipu-model" or "ipu"; throws Error otherwise.
Device parse_device(const std::string& name);
/// The canonical name of a device.
std::string device_name(Device device);
/// Devices this build can run on this machine, in order of preference ("cpu" always).
std::vector<std::string> available_devices();

/// How the layer stack computes: `sparse` is the method; `dense` is the dense-matrix baseline.
enum class Mode { sparse, dense };

/// Build facts: version, compiler, enabled backends.
struct BuildInfo {
  std::string version;
  std::string compiler;
  bool cuda = false;
  bool poplar = false;
  int cpu_threads = 0;  ///< CPU worker threads now: the default, or the set_num_threads cap
};
BuildInfo build_info();

/// Caps the CPU worker threads (0 restores the default). Results do not depend on it.
void set_num_threads(int n);

}  // namespace saltatory
