// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

#include <initializer_list>
#include <poplar/DataStream.hpp>
#include <poplar/DebugContext.hpp>
#include <poplar/GraphElements.hpp>
#include <poplar/Tensor.hpp>

namespace poplar::program {

/// A control program run by an Engine.
class Program {
 public:
  Program();
  Program(const Program& p);
  Program(Program&& p) noexcept;
  Program& operator=(const Program& p);
  Program& operator=(Program&& p) noexcept;
  ~Program();
};

/// Runs a compute set.
class Execute : public Program {
 public:
  explicit Execute(ComputeSet cs, const DebugContext& debugContext = {});
  explicit Execute(ComputeSet cs, Tensor t, const DebugContext& debugContext = {});
};

/// Runs programs in order.
class Sequence : public Program {
 public:
  Sequence(const DebugContext& debugContext = {});
  Sequence(std::initializer_list<Program> programs, const DebugContext& debugContext = {});
  void add(const Program& p);
};

/// Copies tensor to tensor, stream to tensor or tensor to stream.
class Copy : public Program {
 public:
  Copy(Tensor src, Tensor dst, bool dontOutline = false, const DebugContext& debugContext = {});
  Copy(const DataStream& stream, Tensor dst, bool optimiseMemory = false,
       const DebugContext& debugContext = {});
  Copy(Tensor src, const DataStream& stream, bool optimiseMemory = false,
       const DebugContext& debugContext = {});
};

}  // namespace poplar::program
