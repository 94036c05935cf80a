// Two-threshold spike selection with capacity K, for one (t, b) list.
//   spikes     = { j : V[j] > theta1 }                 -> ids[0 : n_spk]
//   candidates = { j : theta2 < V[j] <= theta1 }       -> ids[n_spk : n_tot]   (gradient only)
// Spikes take priority over candidates. Each group is kept whole when it fits; otherwise the
// overflow policy keeps the lowest ids, or a seeded random subset (the entries with the smallest
// hash(stream, j), independent of scan order so every backend picks the same ids). Both groups are
// written in ascending id order. dropped = spikes that did not fit (candidates are not counted).
#pragma once

#include "saltatory/kernels/common.hpp"

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

/// Counts of one selected list.
struct SelectCounts {
  int n_spk;
  int n_tot;
  int dropped;
};

/// Selects spikes and gradient candidates of `v[0:n]` into `ids[0:capacity]`.
/// `priority` is scratch of `capacity` entries (used by the random policy only).
SALTATORY_HD SelectCounts select_two_threshold(const float* v, int n, float theta1, float theta2,
                                               int capacity, OverflowPolicy policy, uint64_t stream,
                                               int32_t* ids, uint64_t* priority) {
  SubsetCollector spikes{ids, priority, capacity, policy, stream};
  for (int j = 0; j < n; ++j)
    if (v[j] > theta1) spikes.offer(j);
  const int n_spk = spikes.finish();
  SubsetCollector candidates{ids + n_spk, priority, capacity - n_spk, policy, mix64(stream + 1)};
  if (n_spk < capacity)
    for (int j = 0; j < n; ++j)
      if (v[j] > theta2 && v[j] <= theta1) candidates.offer(j);
  const int n_cand = candidates.finish();
  return {n_spk, n_spk + n_cand, spikes.offered - n_spk};
}

}  // namespace saltatory::kernels
