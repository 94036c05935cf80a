// Cross-entropy losses. Spike counts c [B, N] from lists [T, B, K]; softmax over neurons/classes;
// batch mean; gradient to list entries is dL/dc[b, ids_k] for every listed entry (k < n_tot).
#include "saltatory/ops/losses.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "saltatory/core/error.hpp"
#include "saltatory/core/memory.hpp"

namespace saltatory {

namespace {

/// Cross-entropy of one logit row; writes softmax - onehot into `grad` (scaled) if given.
double softmax_cross_entropy(const float* logits, int n, int label, float scale, float* grad) {
  const float top = *std::max_element(logits, logits + n);
  double sum = 0.0;
  for (int j = 0; j < n; ++j) sum += std::exp(static_cast<double>(logits[j] - top));
  const double log_sum = std::log(sum) + top;
  if (grad != nullptr)
    for (int j = 0; j < n; ++j)
      grad[j] =
          scale * static_cast<float>(std::exp(logits[j] - log_sum) - (j == label ? 1.0 : 0.0));
  return log_sum - logits[label];
}

void check_labels(const char* op, const int32_t* labels, int B, int C) {
  for (int b = 0; b < B; ++b)
    check(labels[b] >= 0 && labels[b] < C, op, "label ", labels[b], " of sample ", b,
          " is outside [0, ", C, ")");
}

}  // namespace

void spike_counts(const SpikeView& spikes, float* counts) {
  std::fill_n(counts, static_cast<int64_t>(spikes.B) * spikes.N, 0.0f);
  for (int t = 0; t < spikes.T; ++t)
    for (int b = 0; b < spikes.B; ++b) {
      const int32_t* ids = spikes.list(t, b);
      for (int k = 0; k < spikes.spikes(t, b); ++k)
        counts[static_cast<int64_t>(b) * spikes.N + ids[k]] += 1.0f;
    }
}

float spike_count_cross_entropy(const SpikeView& spikes, const int32_t* labels, float* grad) {
  const char* op = "spike_count_cross_entropy";
  validate(spikes, op);
  check_labels(op, labels, spikes.B, spikes.N);
  check_memory(8.0 * spikes.B * spikes.N, op, "spike counts and their gradients [B, N]");
  std::vector<float> counts(static_cast<size_t>(spikes.B) * spikes.N);
  std::vector<float> grad_counts(counts.size());
  spike_counts(spikes, counts.data());
  double loss = 0.0;
  const float scale = 1.0f / spikes.B;
  for (int b = 0; b < spikes.B; ++b)
    loss += softmax_cross_entropy(counts.data() + static_cast<int64_t>(b) * spikes.N, spikes.N,
                                  labels[b], scale,
                                  grad_counts.data() + static_cast<int64_t>(b) * spikes.N);
  if (grad != nullptr) {
    std::fill_n(grad, static_cast<int64_t>(spikes.T) * spikes.B * spikes.K, 0.0f);
    for (int t = 0; t < spikes.T; ++t)
      for (int b = 0; b < spikes.B; ++b) {
        const int32_t* ids = spikes.list(t, b);
        float* g = grad + (static_cast<int64_t>(t) * spikes.B + b) * spikes.K;
        for (int k = 0; k < spikes.total(t, b); ++k)
          g[k] = grad_counts[static_cast<int64_t>(b) * spikes.N + ids[k]];
      }
  }
  return static_cast<float>(loss / spikes.B);
}

float membrane_cross_entropy(const float* membrane, int T, int B, int C, const int32_t* labels,
                             float* grad) {
  const char* op = "membrane_cross_entropy";
  check(T > 0 && B > 0 && C > 0, op, "shape [", T, ", ", B, ", ", C, "] must be positive");
  check_labels(op, labels, B, C);
  const int64_t n = static_cast<int64_t>(T) * B * C;
  for (int64_t i = 0; i < n; ++i)
    check(std::isfinite(membrane[i]), op, "membrane value at flat index ", i, " is not finite");
  double loss = 0.0;
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b) {
      const int64_t offset = (static_cast<int64_t>(t) * B + b) * C;
      loss += softmax_cross_entropy(membrane + offset, C, labels[b], 1.0f / B,
                                    grad != nullptr ? grad + offset : nullptr);
    }
  return static_cast<float>(loss / B);
}

}  // namespace saltatory
