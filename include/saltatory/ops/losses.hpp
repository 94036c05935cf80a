// Classification losses over a stack's output, with their gradients, averaged over the batch.
//   spike count:  c[b, j] = sum_t [j among spikes of list (t, b)];  L = mean_b CE(softmax(c[b]), y_b)
//                 dL/d(entry k of list (t, b)) = dL/dc[b, ids_k] for k < n_tot (spikes and candidates)
//   membrane:     L = mean_b sum_t CE(softmax(V[t, b, :]), y_b);  grad [T, B, C]
#pragma once

#include <cstdint>

#include "saltatory/core/spikes.hpp"

namespace saltatory {

/// Spike counts c [B, N] of the spikes in `spikes` (candidates excluded).
void spike_counts(const SpikeView& spikes, float* counts);

/// Softmax cross-entropy of spike counts. `grad` [T, B, K] (optional) receives dL/d(entry).
float spike_count_cross_entropy(const SpikeView& spikes, const int32_t* labels, float* grad);

/// Softmax cross-entropy of membrane logits summed over time. `grad` [T, B, C] (optional).
float membrane_cross_entropy(const float* membrane, int T, int B, int C, const int32_t* labels,
                             float* grad);

}  // namespace saltatory
