// Roofline probes (see the header). The gather probe sums rows four at a time into a per-list
// accumulator, the best plain-C++ schedule we found; the multiply-add probe runs 16 independent
// 8-wide chains per thread so that latency never limits it.
#include "saltatory/bench/probe.hpp"

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>
#include <vector>

#include "saltatory/core/error.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace saltatory {

namespace {

using Clock = std::chrono::steady_clock;

/// Trials of a probe; the best one counts (the others met a noisy neighbour or a cold cache).
constexpr int kTrials = 5;

/// Runs `pass` (returning its work units) over kTrials trials sharing min_seconds; best rate.
template <class F>
ProbeResult best_rate(double min_seconds, F&& pass) {
  ProbeResult best{0.0, 0.0, false};
  for (int trial = 0; trial < kTrials; ++trial) {
    double work = 0.0;
    const auto start = Clock::now();
    double seconds = 0.0;
    do {
      work += pass();
      seconds = std::chrono::duration<double>(Clock::now() - start).count();
    } while (seconds < min_seconds / kTrials);
    if (work / seconds > best.rate) best = {work / seconds, seconds, false};
  }
  return best;
}

constexpr int kChains = 16;
constexpr int64_t kRounds = 1 << 16;

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) float fma_chains() {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.0001f);
  for (int64_t r = 0; r < kRounds; ++r)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  float out[8], sum = 0.0f;
  for (int i = 0; i < kChains; ++i) {
    _mm256_storeu_ps(out, acc[i]);
    sum += out[0];
  }
  return sum;
}
#endif

float mul_add_chains() {
  float acc[kChains][8];
  for (int i = 0; i < kChains; ++i)
    for (int l = 0; l < 8; ++l) acc[i][l] = 0.001f * i;
  for (int64_t r = 0; r < kRounds; ++r)
    for (int i = 0; i < kChains; ++i)
      for (int l = 0; l < 8; ++l) acc[i][l] = acc[i][l] * 0.999f + 0.0001f;
  float sum = 0.0f;
  for (int i = 0; i < kChains; ++i) sum += acc[i][0];
  return sum;
}

}  // namespace

ProbeResult probe_gather_bandwidth(int rows, int cols, int k, double min_seconds) {
  check(rows > 0 && cols > 0 && k > 0 && k <= rows, "probe_gather_bandwidth",
        "needs 0 < k <= rows and cols > 0, got rows=", rows, " cols=", cols, " k=", k);
  constexpr int kLists = 512;
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(rows) * cols);
  for (float& x : w) x = u(rng);
  std::vector<int32_t> all(rows), ids(static_cast<size_t>(kLists) * k);
  std::iota(all.begin(), all.end(), 0);
  for (int l = 0; l < kLists; ++l) {
    std::shuffle(all.begin(), all.end(), rng);
    std::sort(all.begin(), all.begin() + k);
    std::copy_n(all.begin(), k, ids.begin() + static_cast<size_t>(l) * k);
  }
  tbb::enumerable_thread_specific<std::vector<float>> accumulators(
      [&] { return std::vector<float>(cols); });
  const auto pass = [&] {
    tbb::parallel_for(0, kLists, [&](int l) {
      float* acc = accumulators.local().data();
      std::fill_n(acc, cols, 0.0f);
      const int32_t* list = ids.data() + static_cast<size_t>(l) * k;
      int i = 0;
      for (; i + 4 <= k; i += 4) {
        const float* r0 = w.data() + static_cast<int64_t>(list[i]) * cols;
        const float* r1 = w.data() + static_cast<int64_t>(list[i + 1]) * cols;
        const float* r2 = w.data() + static_cast<int64_t>(list[i + 2]) * cols;
        const float* r3 = w.data() + static_cast<int64_t>(list[i + 3]) * cols;
        for (int c = 0; c < cols; ++c) acc[c] += (r0[c] + r1[c]) + (r2[c] + r3[c]);
      }
      for (; i < k; ++i) {
        const float* r = w.data() + static_cast<int64_t>(list[i]) * cols;
        for (int c = 0; c < cols; ++c) acc[c] += r[c];
      }
    });
    return static_cast<double>(kLists) * k * cols * sizeof(float);
  };
  pass();  // warm the matrix into cache, as a training step finds its weights
  return best_rate(min_seconds, pass);
}

ProbeResult probe_multiply_add(double min_seconds) {
#if defined(__x86_64__)
  const bool fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  const bool fma = false;
#endif
  std::vector<float> sink(64);  // independent tasks, spread over all threads
  const auto pass = [&] {
    const int threads = static_cast<int>(sink.size());
    tbb::parallel_for(0, threads, [&](int i) {
#if defined(__x86_64__)
      sink[i] = fma ? fma_chains() : mul_add_chains();
#else
      sink[i] = mul_add_chains();
#endif
    });
    return static_cast<double>(threads) * kRounds * kChains * 8 * 2;
  };
  ProbeResult result = best_rate(min_seconds, pass);
  result.fma = fma;
  return result;
}

}  // namespace saltatory
