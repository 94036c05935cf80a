// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

namespace poplar {

enum class ReplicatedStreamMode { REPLICATE, BROADCAST };

/// A host <-> device FIFO, connected to host memory by Engine::connectStream.
class DataStream {
 public:
  DataStream(const DataStream& other);
  DataStream(DataStream&& other) noexcept;
  DataStream& operator=(const DataStream& other);
  DataStream& operator=(DataStream&& other) noexcept;
  ~DataStream();
};

}  // namespace poplar
