// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

#include <cstddef>
#include <poplar/ArrayRef.hpp>
#include <poplar/Type.hpp>

namespace poplar {

/// A reference to a subset of tensor elements in a graph.
class Tensor {
 public:
  Tensor();
  Tensor(const Tensor& other);
  Tensor(Tensor&& other) noexcept;
  Tensor& operator=(const Tensor& other);
  Tensor& operator=(Tensor&& other) noexcept;
  ~Tensor();
  Type elementType() const;
  std::size_t numElements() const;
  Tensor slice(std::size_t begin, std::size_t end, unsigned dimension) const&;
  Tensor slice(std::size_t begin, std::size_t end, unsigned dimension) &&;
  Tensor slice(std::size_t begin, std::size_t end) const&;
  Tensor slice(std::size_t begin, std::size_t end) &&;
  Tensor slice(ArrayRef<std::size_t> begin, ArrayRef<std::size_t> end) const&;
};

/// Concatenates tensors along `dimension`.
Tensor concat(ArrayRef<Tensor> ts, unsigned dimension = 0);
Tensor concat(const Tensor& first, const Tensor& second, unsigned dimension = 0);

}  // namespace poplar
