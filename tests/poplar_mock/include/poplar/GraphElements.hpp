// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

#include <cstddef>
#include <poplar/StringRef.hpp>

namespace poplar {

class FieldRef;

/// A reference to a compute set within a graph.
class ComputeSet {};

/// A reference to a vertex within a graph.
class VertexRef {
 public:
  FieldRef operator[](StringRef fieldName) const;
};

/// A reference to a field of a vertex; indexed for Vector<Input<Vector<...>>> fields.
class FieldRef {
 public:
  FieldRef operator[](std::size_t index) const;
};

}  // namespace poplar
