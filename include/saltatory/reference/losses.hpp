// Naive double-precision reference of the classification losses (ops/losses.hpp), batch mean.
//   spike count:  c[b, j] = #{t : j among the spikes (k < n_spk) of list (t, b)}
//                 L = (1/B) sum_b (logsumexp(c[b]) - c[b, y_b])
//                 dL/d(entry k of list (t, b)) = (softmax(c[b])[ids_k] - [ids_k == y_b]) / B for
//                 k < n_tot (spikes and candidates), 0 otherwise; grad layout [T, B, K]
//   membrane:     L = (1/B) sum_t sum_b (logsumexp(V[t, b]) - V[t, b, y_b]),  V and grad [T, B, C]
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "saltatory/core/spikes.hpp"
#include "saltatory/reference/lif_stack.hpp"

namespace saltatory::reference {

namespace detail {

/// Cross-entropy of logits x[0:n] with label y; writes softmax(x) - onehot(y), times `scale`, to
/// `grad` when non-null. Numerically stable (max-shifted log-sum-exp).
inline double softmax_cross_entropy(const double* x, int n, int32_t y, double scale, double* grad) {
  require(y >= 0 && y < n, "label out of range");
  const double m = *std::max_element(x, x + n);
  double sum = 0.0;
  for (int j = 0; j < n; ++j) sum += std::exp(x[j] - m);
  const double lse = m + std::log(sum);
  if (grad != nullptr)
    for (int j = 0; j < n; ++j) grad[j] = scale * (std::exp(x[j] - lse) - (j == y ? 1.0 : 0.0));
  return lse - x[y];
}

}  // namespace detail

/// Softmax cross-entropy of spike counts over time (classes = out.N), mean over the batch.
/// `grad` (optional) is resized to [T * B * K] and receives dL/d(list entry).
inline double spike_count_cross_entropy(const SpikeView& out, const std::vector<int32_t>& labels,
                                        std::vector<double>* grad) {
  const int T = out.T, B = out.B, K = out.K, N = out.N;
  detail::require(labels.size() == static_cast<size_t>(B), "one label per batch element");
  const std::vector<double> dense = detail::dense_spikes(out);  // validates the lists
  std::vector<double> counts(static_cast<size_t>(B) * N, 0.0), dc(counts.size(), 0.0);
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < N; ++j)
        counts[static_cast<size_t>(b) * N + j] += dense[detail::at(t, b, B, N) + j];
  double loss = 0.0;
  for (int b = 0; b < B; ++b)
    loss += detail::softmax_cross_entropy(&counts[static_cast<size_t>(b) * N], N, labels[b],
                                          1.0 / B, &dc[static_cast<size_t>(b) * N]);
  if (grad != nullptr) {
    grad->assign(static_cast<size_t>(T) * B * K, 0.0);
    for (int t = 0; t < T; ++t)
      for (int b = 0; b < B; ++b)
        for (int k = 0; k < out.total(t, b); ++k)
          (*grad)[detail::at(t, b, B, K) + k] = dc[static_cast<size_t>(b) * N + out.list(t, b)[k]];
  }
  return loss / B;
}

/// Softmax cross-entropy of membrane logits v [T * B * C] summed over time, mean over the batch.
/// `grad` (optional) is resized to [T * B * C].
inline double membrane_cross_entropy(const std::vector<double>& v, int T, int B, int C,
                                     const std::vector<int32_t>& labels,
                                     std::vector<double>* grad) {
  detail::require(T > 0 && B > 0 && C > 0, "sizes must be positive");
  detail::require(v.size() == static_cast<size_t>(T) * B * C, "membrane size");
  detail::require(labels.size() == static_cast<size_t>(B), "one label per batch element");
  if (grad != nullptr) grad->assign(v.size(), 0.0);
  double loss = 0.0;
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b) {
      const size_t row = detail::at(t, b, B, C);
      loss += detail::softmax_cross_entropy(&v[row], C, labels[b], 1.0 / B,
                                            grad != nullptr ? &(*grad)[row] : nullptr);
    }
  return loss / B;
}

}  // namespace saltatory::reference
