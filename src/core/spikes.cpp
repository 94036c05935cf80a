// SpikeTensor construction, conversion and validation. Layouts: ids [T, B, K], counts [T, B],
// dense [T, B, N]. Overflow uses the same SubsetCollector as spike selection.
#include "saltatory/core/spikes.hpp"

#include <algorithm>
#include <cmath>

#include "saltatory/core/error.hpp"
#include "saltatory/core/memory.hpp"
#include "saltatory/kernels/sparse.hpp"

namespace saltatory {

namespace {

constexpr uint64_t kDataStream = 0xDA7A;

void check_sizes(const char* op, int T, int B, int K, int N) {
  check(T > 0, op, "T (steps) ", T, " must be positive");
  check(B > 0, op, "B (batch) ", B, " must be positive");
  check(K > 0, op, "capacity ", K, " must be positive");
  check(N > 0, op, "n_neurons ", N, " must be positive");
  check(static_cast<int64_t>(T) * B * K < (int64_t{1} << 40), op, "T*B*K is too large");
  check_memory(4.0 * T * B * (K + 2.0), op, "a spike tensor of that size");
}

}  // namespace

SpikeTensor::SpikeTensor(int T, int B, int K, int N) : T_(T), B_(B), K_(K), N_(N) {
  check_sizes("SpikeTensor", T, B, K, N);
  ids_.assign(static_cast<size_t>(T) * B * K, -1);
  n_spk_.assign(static_cast<size_t>(T) * B, 0);
  n_tot_.assign(static_cast<size_t>(T) * B, 0);
}

SpikeTensor SpikeTensor::from_view(const SpikeView& view) {
  validate(view, "SpikeTensor");
  SpikeTensor out(view.T, view.B, view.K, view.N);
  std::copy_n(view.ids, out.ids_.size(), out.ids_.begin());
  std::copy_n(view.n_spk, out.n_spk_.size(), out.n_spk_.begin());
  std::copy_n(view.n_tot, out.n_tot_.size(), out.n_tot_.begin());
  return out;
}

SpikeTensor SpikeTensor::from_dense(const float* dense, int T, int B, int N, int K,
                                    OverflowPolicy policy, uint64_t seed, int64_t first_step) {
  SpikeTensor out(T, B, K, N);
  std::vector<uint64_t> priority(K);
  int64_t dropped = 0;
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b) {
      const float* row = dense + (static_cast<int64_t>(t) * B + b) * N;
      kernels::SubsetCollector keep{
          out.list(t, b), priority.data(), K, policy,
          kernels::stream_key(seed, kDataStream, static_cast<uint64_t>(first_step + t), b)};
      for (int j = 0; j < N; ++j) {
        check(row[j] == 0.0f || row[j] == 1.0f, "SpikeTensor.from_dense", "value ", row[j], " at [",
              t, ", ", b, ", ", j, "] is not 0 or 1");
        if (row[j] != 0.0f) keep.offer(j);
      }
      out.n_spk(t, b) = out.n_tot(t, b) = keep.finish();
      dropped += keep.offered - keep.kept;
    }
  out.dropped_.spikes = dropped;
  return out;
}

SpikeTensor SpikeTensor::from_events(const int64_t* sample, const double* time, const int64_t* unit,
                                     int64_t n_events, double bin_width, int T, int B, int N, int K,
                                     OverflowPolicy policy, uint64_t seed) {
  const char* op = "SpikeTensor.from_events";
  check(std::isfinite(bin_width) && bin_width > 0, op, "bin_width ", bin_width,
        " must be positive");
  SpikeTensor out(T, B, K, N);
  // Bucket events by list (t, b): counting sort, then sort and de-duplicate each bucket.
  const int64_t n_lists = static_cast<int64_t>(T) * B;
  std::vector<int64_t> start(n_lists + 1, 0), list_of(n_events, -1);
  int64_t late = 0;
  for (int64_t e = 0; e < n_events; ++e) {
    check(sample[e] >= 0 && sample[e] < B, op, "event ", e, ": sample ", sample[e],
          " is outside [0, ", B, ")");
    check(unit[e] >= 0 && unit[e] < N, op, "event ", e, ": unit ", unit[e], " is outside [0, ", N,
          ")");
    check(std::isfinite(time[e]) && time[e] >= 0, op, "event ", e, ": time ", time[e],
          " must be finite and non-negative");
    const double bin = std::floor(time[e] / bin_width);
    if (bin >= T) {
      ++late;
      continue;
    }
    list_of[e] = static_cast<int64_t>(bin) * B + sample[e];
    ++start[list_of[e] + 1];
  }
  for (int64_t i = 0; i < n_lists; ++i) start[i + 1] += start[i];
  std::vector<int32_t> units(start[n_lists]);
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t e = 0; e < n_events; ++e)
    if (list_of[e] >= 0) units[fill[list_of[e]]++] = static_cast<int32_t>(unit[e]);
  std::vector<uint64_t> priority(K);
  int64_t dropped = late;
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b) {
      const int64_t i = static_cast<int64_t>(t) * B + b;
      auto first = units.begin() + start[i], last = units.begin() + start[i + 1];
      std::sort(first, last);
      last = std::unique(first, last);
      kernels::SubsetCollector keep{out.list(t, b), priority.data(), K, policy,
                                    kernels::stream_key(seed, kDataStream, t, b)};
      for (auto it = first; it != last; ++it) keep.offer(*it);
      out.n_spk(t, b) = out.n_tot(t, b) = keep.finish();
      dropped += keep.offered - keep.kept;
    }
  out.dropped_.spikes = dropped;
  return out;
}

void to_dense(const SpikeView& view, float* dense) {
  std::fill_n(dense, static_cast<int64_t>(view.T) * view.B * view.N, 0.0f);
  for (int t = 0; t < view.T; ++t)
    for (int b = 0; b < view.B; ++b)
      kernels::scatter_value(dense + (static_cast<int64_t>(t) * view.B + b) * view.N,
                             view.list(t, b), view.spikes(t, b), 1.0f);
}

std::vector<float> SpikeTensor::to_dense() const {
  check_memory(4.0 * T_ * B_ * N_, "SpikeTensor.to_dense", "a dense [T, B, N] array");
  std::vector<float> dense(static_cast<size_t>(T_) * B_ * N_);
  saltatory::to_dense(view(), dense.data());
  return dense;
}

int64_t SpikeTensor::total_spikes() const {
  int64_t total = 0;
  for (int32_t n : n_spk_) total += n;
  return total;
}

void validate(const SpikeView& view, const char* op) {
  check(!view.on_device, op,
        "the spikes are in CUDA memory; this op reads host lists (copy them to "
        "the host, or pass them to a forward on device cuda)");
  check(view.T > 0 && view.B > 0 && view.K > 0 && view.N > 0, op, "spike tensor shape [T=", view.T,
        ", B=", view.B, ", K=", view.K, "] over N=", view.N, " neurons must be positive");
  // Distinctness: a mark per neuron (the last list that listed it) when N is no larger than the
  // lists themselves, else a sorted copy of each list, so memory never exceeds the tensor's own.
  const int64_t lists = static_cast<int64_t>(view.T) * view.B;
  const bool marks = view.N <= std::max<int64_t>(lists * view.K, 1 << 16);
  std::vector<int64_t> seen(marks ? view.N : 0, -1);
  std::vector<int32_t> sorted(marks ? 0 : view.K);
  for (int t = 0; t < view.T; ++t)
    for (int b = 0; b < view.B; ++b) {
      const int n_spk = view.spikes(t, b), n_tot = view.total(t, b);
      check(0 <= n_spk && n_spk <= n_tot && n_tot <= view.K, op, "counts at [", t, ", ", b,
            "] violate 0 <= n_spk (", n_spk, ") <= n_tot (", n_tot, ") <= K (", view.K, ")");
      const int32_t* ids = view.list(t, b);
      const int64_t list_index = static_cast<int64_t>(t) * view.B + b;
      for (int k = 0; k < n_tot; ++k) {
        check(ids[k] >= 0 && ids[k] < view.N, op, "id ", ids[k], " at [", t, ", ", b, ", ", k,
              "] is outside [0, ", view.N, ")");
        if (!marks) continue;
        check(seen[ids[k]] != list_index, op, "id ", ids[k], " appears twice in list [", t, ", ", b,
              "]");
        seen[ids[k]] = list_index;
      }
      if (marks) continue;
      std::copy_n(ids, n_tot, sorted.begin());
      std::sort(sorted.begin(), sorted.begin() + n_tot);
      const auto twice = std::adjacent_find(sorted.begin(), sorted.begin() + n_tot);
      check(twice == sorted.begin() + n_tot, op, "id ", twice == sorted.end() ? 0 : *twice,
            " appears twice in list [", t, ", ", b, "]");
    }
}

}  // namespace saltatory
