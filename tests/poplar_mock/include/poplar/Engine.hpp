// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

#include <functional>
#include <poplar/ArrayRef.hpp>
#include <poplar/DebugContext.hpp>
#include <poplar/Device.hpp>
#include <poplar/Graph.hpp>
#include <poplar/OptionFlags.hpp>
#include <poplar/Program.hpp>
#include <poplar/StringRef.hpp>
#include <string>

namespace poplar {

/// A graph compiled for a device, with its control programs.
class Engine {
 public:
  using ProgressFunc = std::function<void(int, int)>;
  Engine(const Graph& graph, ArrayRef<program::Program> progs, const OptionFlags& opt = {},
         ProgressFunc progressCallBack = ProgressFunc(), const DebugContext& debugContext = {});
  Engine(const Graph& graph, program::Program prog, const OptionFlags& opt = {},
         ProgressFunc progressCallBack = ProgressFunc(), const DebugContext& debugContext = {});
  Engine(Engine&&) noexcept;
  ~Engine();
  void load(const Device& device);
  void run(unsigned prog = 0, const std::string& debugName = "");
  void connectStream(StringRef handle, void* p);
  void connectStream(StringRef handle, void* begin, void* end);
};

}  // namespace poplar
