// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

#include <poplar/Device.hpp>
#include <poplar/OptionFlags.hpp>
#include <poplar/TargetType.hpp>
#include <vector>

namespace poplar {

/// Enumerates the devices attached to this host.
class DeviceManager {
 public:
  DeviceManager(const DeviceManager&);
  DeviceManager(DeviceManager&&) noexcept;
  virtual ~DeviceManager();
  static DeviceManager createDeviceManager();
  std::vector<Device> getDevices(const OptionFlags& opts = {}) const;
  std::vector<Device> getDevices(TargetType type, unsigned requiredNumIPUs,
                                 const OptionFlags& opts = {}) const;
};

}  // namespace poplar
