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

/// Calls f(c0, c1) for consecutive column blocks of [0, n), in parallel.
template <class F>
void for_each_column_block(int n, F&& f) {
  const int blocks = (n + kColumnBlock - 1) / kColumnBlock;
  tbb::parallel_for(0, blocks,
                    [&](int i) { f(i * kColumnBlock, std::min(n, (i + 1) * kColumnBlock)); });
}

/// Calls f(r0, r1) for consecutive row blocks of [0, m), in parallel.
template <class F>
void for_each_row_block(int64_t m, F&& f) {
  const int64_t blocks = (m + kRowBlock - 1) / kRowBlock;
  tbb::parallel_for(int64_t{0}, blocks,
                    [&](int64_t i) { f(i * kRowBlock, std::min(m, (i + 1) * kRowBlock)); });
}

/// Calls f(l0, l1) for consecutive chunks of kListChunk lists of [0, lists), in parallel.
template <class F>
void for_each_chunk(int64_t lists, F&& f) {
  const int64_t chunks = (lists + kListChunk - 1) / kListChunk;
  tbb::parallel_for(int64_t{0}, chunks,
                    [&](int64_t i) { f(i * kListChunk, std::min(lists, (i + 1) * kListChunk)); });
}

}  // namespace saltatory::cpu
