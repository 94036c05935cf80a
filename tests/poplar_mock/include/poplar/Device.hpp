// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

#include <poplar/Target.hpp>

namespace poplar {

/// A physical (or modelled) device; movable, not copyable.
class Device {
 public:
  Device(Device&&) noexcept;
  Device& operator=(Device&&) noexcept;
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  virtual ~Device();
  const Target& getTarget() const;
  bool attach() const;
};

}  // namespace poplar
