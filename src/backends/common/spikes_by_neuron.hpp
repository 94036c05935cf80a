// Spikes grouped for the weight-gradient gather: by chunk of whole steps, then by input neuron.
// The host backends (CPU, IPU model) gather from it, and the CUDA backend groups its spikes the
// same way, so that all of them sum weight gradients in one order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "backends/common/history.hpp"
#include "backends/common/order.hpp"
#include "backends/cpu/parallel.hpp"
#include "saltatory/core/spikes.hpp"

namespace saltatory::common {

/// The spikes feeding the lists of a window, grouped by chunk of `chunk_steps` steps and, within a
/// chunk, by neuron: for chunk q and neuron i, the lists (t, b) of q whose current i fed,
/// ascending, numbered from the window's first list. A spike of step t feeds list (t + delay, b);
/// those of step -1 come from `history.before` (an initial state's), when it has them.
class SpikesByNeuron {
 public:
  SpikesByNeuron(const SpikeView& spikes, Window w, int delay, int chunk_steps)
      : SpikesByNeuron(SpikeHistory{spikes, {}}, w, delay, chunk_steps) {}
  SpikesByNeuron(const SpikeHistory& history, Window w, int delay, int chunk_steps)
      : n_(history.now.N), chunks_((w.t1 - w.t0 + chunk_steps - 1) / chunk_steps) {
    const int B = history.now.B;
    // Calls f(list, neuron) for every spike feeding a list of `chunk`, lists ascending.
    const auto each_spike = [&](int64_t chunk, auto&& f) {
      const int s0 = w.t0 + static_cast<int>(chunk) * chunk_steps;
      const int s1 = std::min(w.t1, s0 + chunk_steps);
      for (int t = s0; t < s1; ++t)
        for (int b = 0; b < B && history.has(t - delay); ++b) {
          const int32_t* ids = history.list(t - delay, b);
          const auto list = static_cast<int32_t>((t - w.t0) * B + b);
          for (int k = 0; k < history.spikes(t - delay, b); ++k) f(list, ids[k]);
        }
    };
    start_.assign(chunks_ * n_ + 1, 0);
    cpu::parallel_for(0, chunks_, [&](int64_t q) {  // counts, chunk by chunk
      each_spike(q, [&](int32_t, int32_t i) { ++start_[q * n_ + i + 1]; });
    });
    std::partial_sum(start_.begin(), start_.end(), start_.begin());
    lists_.resize(start_.back());
    cpu::parallel_for(0, chunks_, [&](int64_t q) {  // fill, chunk by chunk
      std::vector<int64_t> next(start_.begin() + q * n_, start_.begin() + (q + 1) * n_);
      each_spike(q, [&](int32_t list, int32_t i) { lists_[next[i]++] = list; });
    });
  }
  int64_t chunks() const { return chunks_; }
  const int32_t* lists(int64_t chunk, int i) const {
    return lists_.data() + start_[chunk * n_ + i];
  }
  int count(int64_t chunk, int i) const {
    return static_cast<int>(start_[chunk * n_ + i + 1] - start_[chunk * n_ + i]);
  }

 private:
  int64_t n_, chunks_;
  std::vector<int64_t> start_;
  std::vector<int32_t> lists_;
};

}  // namespace saltatory::common
