// Deterministic oneTBB helpers: work is split into fixed blocks whose boundaries do not depend on
// the thread count, and each output element is written by exactly one block.
#pragma once

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstdint>

namespace saltatory::cpu {

/// Columns per block of a weight-gradient scatter: long enough (1 KB of floats) for the hardware
/// prefetcher to stream each scattered row segment; measured best of 32-256 on shd-paper.
inline constexpr int kColumnBlock = 256;
/// Rows per block of a GEMM partition.
inline constexpr int kRowBlock = 64;
/// Lists (t, b) per chunk of list-parallel work.
inline constexpr int64_t kListChunk = 256;
/// Lists per chunk of the weight-gradient gather: a chunk's current gradients in one column block
/// (kScatterChunk x kColumnBlock floats, 256 KB) stay in a 512 KB L2 cache.
inline constexpr int32_t kScatterChunk = 256;

/// Calls f(i0, i1) for consecutive blocks of `block` items of [0, n), in parallel.
template <class F>
void for_each_block(int64_t n, int64_t block, F&& f) {
  tbb::parallel_for(int64_t{0}, (n + block - 1) / block,
                    [&](int64_t i) { f(i * block, std::min(n, (i + 1) * block)); });
}

}  // namespace saltatory::cpu
