// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

#include <poplar/StringRef.hpp>
#include <string>

namespace poplar {

/// Where in the source an operation was called from (captured by default arguments).
class SourceLocation {
 public:
  static SourceLocation Current();
};

/// A name (and source location) attached to graph objects and programs.
class DebugContext {
 public:
  DebugContext(SourceLocation loc = SourceLocation::Current());
  DebugContext(const char* name, SourceLocation loc = SourceLocation::Current());
  DebugContext(StringRef name, SourceLocation loc = SourceLocation::Current());
  DebugContext(std::string name, SourceLocation loc = SourceLocation::Current());
};

}  // namespace poplar
