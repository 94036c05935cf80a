// Recycled float buffers for the per-call arrays of the CPU backend (membrane histories, current
// gradients: [T, B, N] each). A training loop frees and requests the same sizes every step; handing
// freed buffers back out spares the kernel from mapping and zeroing fresh pages each time.
#pragma once

#include <cstddef>
#include <memory>

namespace saltatory::cpu {

/// Returns a buffer to the pool (or frees it when the pool is full).
struct BufferReturn {
  size_t capacity = 0;
  void operator()(float* data) const;
};

/// An uninitialised float buffer of at least the requested size.
using Buffer = std::unique_ptr<float[], BufferReturn>;

/// A buffer of at least `n` floats: a pooled one of capacity in [n, 5n/4] if any, else a new one.
/// At most kPoolBuffers buffers and kPoolBytes bytes wait in the pool.
Buffer acquire_buffer(size_t n);

inline constexpr size_t kPoolBuffers = 16;
inline constexpr size_t kPoolBytes = size_t{1} << 30;

}  // namespace saltatory::cpu
