// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

#include <poplar/TargetType.hpp>

namespace poplar {

/// The description of a device: IPUs, tiles, workers, memory.
class Target {
 public:
  unsigned getNumIPUs() const;
  unsigned getTilesPerIPU() const;
  unsigned getNumWorkerContexts() const;
  unsigned getBytesPerTile() const;
};

}  // namespace poplar
