// Two-threshold spike selection with capacity K, for one (t, b) list (theta1 per neuron).
//   spikes     = { j : V[j] > theta1[j] }              -> ids[0 : n_spk]
//   candidates = { j : theta2 < V[j] <= theta1[j] }    -> ids[n_spk : n_tot]   (gradient only)
// Spikes take priority over candidates. Each group is kept whole when it fits; otherwise the
// overflow policy keeps the lowest ids, or a seeded random subset (the entries with the smallest
// hash(stream, j), independent of scan order so every backend picks the same ids). Both groups are
// written in ascending id order. Drops count the spikes and the candidates that did not fit.
#pragma once

#include "saltatory/kernels/common.hpp"

#if defined(__SSE2__) && !defined(__CUDA_ARCH__)
#include <emmintrin.h>
#endif

namespace saltatory::kernels {

/// Which entries survive when a list overflows its capacity.
enum class OverflowPolicy : int { lowest_ids = 0, random = 1 };

/// splitmix64 finaliser: a well-mixed 64-bit hash of `x`.
SALTATORY_HD uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// Stream key of one list: combines a user seed with up to three coordinates (layer, t, b).
SALTATORY_HD uint64_t stream_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  return mix64(mix64(mix64(seed ^ mix64(a)) ^ b) ^ c);
}

/// Seed of layer l's overflow streams (every backend draws the same subsets).
SALTATORY_HD uint64_t layer_seed(uint64_t seed, uint64_t l) {
  return stream_key(seed, l, 0x5E1EC7, 0);
}

/// Stream of list (t, b) of a layer (t the absolute step of a sequence run in chunks): spikes draw from it, candidates from mix64(it + 1).
SALTATORY_HD uint64_t list_stream(uint64_t layer_seed, int64_t t, int b) {
  return stream_key(layer_seed, static_cast<uint64_t>(t), static_cast<uint64_t>(b), 0);
}

/// Sorts `ids[0:n]` ascending (heapsort: no recursion, no allocation).
SALTATORY_HD void sort_ids(int32_t* ids, int n) {
  auto sift = [ids](int root, int end) {
    while (2 * root + 1 < end) {
      int child = 2 * root + 1;
      if (child + 1 < end && ids[child] < ids[child + 1]) ++child;
      if (ids[root] >= ids[child]) return;
      const int32_t tmp = ids[root];
      ids[root] = ids[child];
      ids[child] = tmp;
      root = child;
    }
  };
  for (int i = n / 2 - 1; i >= 0; --i) sift(i, n);
  for (int end = n - 1; end > 0; --end) {
    const int32_t tmp = ids[0];
    ids[0] = ids[end];
    ids[end] = tmp;
    sift(0, end);
  }
}

/// Keeps up to `cap` of the ids offered to it (in ascending order), by the overflow policy.
/// Random policy: a max-heap on (hash, id) holds the `cap` smallest priorities seen so far;
/// `priority` is caller-provided scratch of `cap` entries.
struct SubsetCollector {
  int32_t* out;
  uint64_t* priority;
  int cap;
  OverflowPolicy policy;
  uint64_t stream;
  int kept = 0;
  int offered = 0;

  SALTATORY_HD bool before(int a, int b) const {  // heap order: larger (priority, id) first
    return priority[a] > priority[b] || (priority[a] == priority[b] && out[a] > out[b]);
  }
  SALTATORY_HD void swap_entries(int a, int b) {
    const uint64_t p = priority[a];
    priority[a] = priority[b];
    priority[b] = p;
    const int32_t i = out[a];
    out[a] = out[b];
    out[b] = i;
  }

  SALTATORY_HD void offer(int32_t id) {
    ++offered;
    if (policy == OverflowPolicy::lowest_ids) {
      if (kept < cap) out[kept++] = id;
      return;
    }
    if (cap == 0) return;
    const uint64_t p = mix64(stream ^ static_cast<uint64_t>(id));
    if (kept < cap) {  // push and sift up
      int i = kept++;
      out[i] = id;
      priority[i] = p;
      while (i > 0 && before(i, (i - 1) / 2)) {
        swap_entries(i, (i - 1) / 2);
        i = (i - 1) / 2;
      }
      return;
    }
    if (p > priority[0] || (p == priority[0] && id > out[0])) return;
    out[0] = id;  // replace the largest priority and sift down
    priority[0] = p;
    int i = 0;
    while (2 * i + 1 < kept) {
      int child = 2 * i + 1;
      if (child + 1 < kept && before(child + 1, child)) ++child;
      if (!before(child, i)) break;
      swap_entries(i, child);
      i = child;
    }
  }

  /// Number kept; ids are left in ascending order.
  SALTATORY_HD int finish() {
    if (policy == OverflowPolicy::random) sort_ids(out, kept);
    return kept;
  }
};

/// Entries lost to capacity: spikes, and gradient candidates (in their own counter).
struct Drops {
  int64_t spikes = 0;
  int64_t candidates = 0;
  SALTATORY_HD Drops& operator+=(const Drops& other) {
    spikes += other.spikes;
    candidates += other.candidates;
    return *this;
  }
};

/// Counts of one selected list.
struct SelectCounts {
  int n_spk;
  int n_tot;
  Drops dropped;
};

/// Keeps up to `cap` of `found[0:count]` (ascending) in `out` by the policy; returns the number kept.
SALTATORY_HD int keep_subset(const int32_t* found, int count, int32_t* out, int cap,
                             OverflowPolicy policy, uint64_t stream, uint64_t* priority) {
  if (count <= cap || policy == OverflowPolicy::lowest_ids) {
    const int kept = count < cap ? count : cap;
    for (int i = 0; i < kept; ++i) out[i] = found[i];
    return kept;
  }
  SubsetCollector subset{out, priority, cap, policy, stream};
  for (int i = 0; i < count; ++i) subset.offer(found[i]);
  return subset.finish();
}

/// Selects spikes and gradient candidates of `v[0:n]` into `ids[0:capacity]`. Scratch: `found`
/// holds 2 n ids (one branch-free compaction pass), `priority` capacity entries (random policy).
SALTATORY_HD SelectCounts select_two_threshold(const float* v, int n, const float* theta1,
                                               float theta2, int capacity, OverflowPolicy policy,
                                               uint64_t stream, int32_t* ids, int32_t* found,
                                               uint64_t* priority) {
  int32_t* spikes = found;
  int32_t* candidates = found + n;
  int n_above = 0, n_between = 0;
  int j = 0;
#if defined(__SSE2__) && !defined(__CUDA_ARCH__)
  // Four neurons per compare; silent groups (most of them) cost no branch per neuron.
  const __m128 t2 = _mm_set1_ps(theta2);
  for (; j + 4 <= n; j += 4) {
    const __m128 x = _mm_loadu_ps(v + j), t1 = _mm_loadu_ps(theta1 + j);
    int above = _mm_movemask_ps(_mm_cmpgt_ps(x, t1));
    int between = _mm_movemask_ps(_mm_and_ps(_mm_cmpgt_ps(x, t2), _mm_cmple_ps(x, t1)));
    for (; above != 0; above &= above - 1) spikes[n_above++] = j + __builtin_ctz(above);
    for (; between != 0; between &= between - 1)
      candidates[n_between++] = j + __builtin_ctz(between);
  }
#endif
  for (; j < n; ++j) {
    const float x = v[j];
    spikes[n_above] = j;
    n_above += x > theta1[j];
    candidates[n_between] = j;
    n_between += (x > theta2) & (x <= theta1[j]);
  }
  const int n_spk = keep_subset(spikes, n_above, ids, capacity, policy, stream, priority);
  const int n_cand = keep_subset(candidates, n_between, ids + n_spk, capacity - n_spk, policy,
                                 mix64(stream + 1), priority);
  return {n_spk, n_spk + n_cand, {n_above - n_spk, n_between - n_cand}};
}

}  // namespace saltatory::kernels
