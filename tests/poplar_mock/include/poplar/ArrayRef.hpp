// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

#include <initializer_list>
#include <vector>

namespace poplar {

/// A non-owning view of contiguous elements.
template <class T>
class ArrayRef {
 public:
  template <class Alloc>
  ArrayRef(const std::vector<T, Alloc>& v);
  ArrayRef(const std::initializer_list<T>& list);
};

}  // namespace poplar
