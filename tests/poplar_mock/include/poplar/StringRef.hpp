// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

#include <poplar/ArrayRef.hpp>
#include <string>

namespace poplar {

/// A non-owning view of a string.
class StringRef : public ArrayRef<char> {
 public:
  StringRef(const std::string& s);
  StringRef(const char* p);
};

}  // namespace poplar
