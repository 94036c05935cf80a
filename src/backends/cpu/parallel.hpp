// Deterministic oneTBB helpers: work is split into fixed blocks whose boundaries do not depend on
// the thread count, and each output element is written by exactly one block.
#pragma once

#include <tbb/parallel_for.h>

#include <algorithm>

namespace saltatory::cpu {

/// Columns per block of a weight-gradient scatter or GEMM partition.
inline constexpr int kColumnBlock = 128;
/// Rows per block of a GEMM partition.
inline constexpr int kRowBlock = 64;

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

}  // namespace saltatory::cpu
