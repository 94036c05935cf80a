// Deterministic parallel helpers: work is split into fixed blocks whose boundaries do not depend on
// the thread count, and each output element is written by exactly one block. oneTBB runs them;
// the ThreadSanitizer build (SALTATORY_STD_THREADS) runs them on std::threads instead, because
// TSan cannot see the synchronisation inside the uninstrumented libtbb.
#pragma once

#include <algorithm>
#include <cstdint>

#ifdef SALTATORY_STD_THREADS
#include <atomic>
#include <thread>
#include <vector>
#else
#include <tbb/parallel_for.h>
#endif

namespace saltatory::cpu {

/// Columns per block of a weight-gradient scatter: long enough (1 KB of floats) for the hardware
/// prefetcher to stream each scattered row segment; measured best of 32-256 on shd-paper.
inline constexpr int kColumnBlock = 256;
/// Rows per block of a GEMM partition.
inline constexpr int kRowBlock = 64;
/// Lists (t, b) per chunk of list-parallel work, at most.
inline constexpr int64_t kListChunk = 256;

/// Lists per block when `lists` independent lists are shared out: kListChunk, but small enough to
/// give 16 blocks (a recompute window may hold a single chunk of lists), and at least 8 lists.
inline int64_t list_block(int64_t lists) { return std::clamp<int64_t>(lists / 16, 8, kListChunk); }

/// Calls f(i) for every i in [begin, end), in parallel.
template <class F>
void parallel_for(int64_t begin, int64_t end, F&& f) {
#ifdef SALTATORY_STD_THREADS
  const int64_t threads =
      std::min<int64_t>(end - begin, std::max(2U, std::thread::hardware_concurrency()));
  std::atomic<int64_t> next{begin};
  const auto work = [&] {
    for (int64_t i = next++; i < end; i = next++) f(i);
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& thread : pool) thread.join();
#else
  tbb::parallel_for(begin, end, f);
#endif
}

/// Calls f(i0, i1) for consecutive blocks of `block` items of [0, n), in parallel.
template <class F>
void for_each_block(int64_t n, int64_t block, F&& f) {
  parallel_for(0, (n + block - 1) / block,
               [&](int64_t i) { f(i * block, std::min(n, (i + 1) * block)); });
}

}  // namespace saltatory::cpu
