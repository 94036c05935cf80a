// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
// The runtime types codelets use (the SDK's Vertex.hpp brings in FieldTypes.hpp and
// InOutTypes.hpp); member functions are declared only, so codelets compile as host C++.
#pragma once

#include <cstddef>

namespace poplar {

/// The memory layout of a Vector field.
enum class VectorLayout : unsigned {
  NOT_A_VECTOR,
  SPAN,
  SHORT_SPAN,
  ONE_PTR,
  SCALED_PTR32,
  SCALED_PTR64,
  SCALED_PTR128,
  COMPACT_PTR
};

/// A vector field of vertex state (or, inside Input/Output/InOut, an edge to a tensor region).
template <typename T, VectorLayout L = VectorLayout::SPAN, unsigned MinAlign = alignof(T),
          bool Interleaved = false>
class Vector {
 public:
  T& operator[](std::size_t i);
  const T& operator[](std::size_t i) const;
  std::size_t size() const;
};

/// A field the vertex reads: a scalar, or Input<Vector<T>> for a region.
template <typename T>
class Input {
 public:
  operator const T&() const;
  const T& operator*() const;
};

/// A field the vertex writes.
template <typename T>
class Output {
 public:
  operator T&() const;
  T& operator*() const;
};

/// A field the vertex reads and writes.
template <typename T>
class InOut {
 public:
  operator T&() const;
  T& operator*() const;
};

template <typename T, VectorLayout L, unsigned MinAlign, bool Interleaved>
class Input<Vector<T, L, MinAlign, Interleaved>> {
 public:
  const T& operator[](std::size_t i) const;
  std::size_t size() const;
};

template <typename T, VectorLayout L, unsigned MinAlign, bool Interleaved>
class Output<Vector<T, L, MinAlign, Interleaved>> {
 public:
  T& operator[](std::size_t i) const;
  std::size_t size() const;
};

template <typename T, VectorLayout L, unsigned MinAlign, bool Interleaved>
class InOut<Vector<T, L, MinAlign, Interleaved>> {
 public:
  T& operator[](std::size_t i) const;
  std::size_t size() const;
};

/// The base of single-worker vertices; a vertex defines `bool compute()`.
class Vertex {};

}  // namespace poplar
