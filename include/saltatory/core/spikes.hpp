// SpikeTensor: fixed-capacity spike lists, time-major.
//   ids   int32 [T, B, K]  ids[t,b,0:n_spk] spikes, ids[t,b,n_spk:n_tot] gradient-only candidates,
//                          ids[t,b,n_tot:K] padding (never read, kept at -1)
//   n_spk int32 [T, B],  n_tot int32 [T, B],  0 <= n_spk <= n_tot <= K,  ids distinct, in [0, N)
#pragma once

#include <cstdint>
#include <vector>

#include "saltatory/kernels/select.hpp"

namespace saltatory {

using kernels::Drops;
using kernels::OverflowPolicy;

/// A non-owning view of spike lists (for zero-copy input from numpy or other owners).
struct SpikeView {
  const int32_t* ids = nullptr;
  const int32_t* n_spk = nullptr;
  const int32_t* n_tot = nullptr;
  int T = 0, B = 0, K = 0, N = 0;
  /// The arrays are in CUDA device memory (e.g. from PyTorch or CuPy through DLPack). Only the
  /// cuda device accepts such a view; it validates it on the device.
  bool on_device = false;

  const int32_t* list(int t, int b) const { return ids + (static_cast<int64_t>(t) * B + b) * K; }
  int spikes(int t, int b) const { return n_spk[static_cast<int64_t>(t) * B + b]; }
  int total(int t, int b) const { return n_tot[static_cast<int64_t>(t) * B + b]; }
};

/// Owning spike lists. `dropped` counts spikes lost to capacity when the tensor was built (or by
/// the layer that selected them), `dropped_candidates` the gradient candidates lost to it.
class SpikeTensor {
 public:
  SpikeTensor() = default;
  /// Empty lists (all counts zero, ids -1). Throws Error on non-positive sizes.
  SpikeTensor(int T, int B, int K, int N);
  /// Copies a view (validating it).
  static SpikeTensor from_view(const SpikeView& view);

  /// From dense 0/1 (any nonzero is a spike) float data [T, B, N]; overflow kept by policy, the
  /// random one drawing list (t, b) from a stream of step first_step + t (so that the chunks of a
  /// sequence keep the spikes the whole sequence would).
  static SpikeTensor from_dense(const float* dense, int T, int B, int N, int K,
                                OverflowPolicy policy = OverflowPolicy::lowest_ids,
                                uint64_t seed = 0, int64_t first_step = 0);
  /// From events (sample index, time, unit): binned by floor(time / bin_width) into T bins;
  /// events at or past T * bin_width are dropped and counted; repeated (bin, unit) pairs count once.
  static SpikeTensor from_events(const int64_t* sample, const double* time, const int64_t* unit,
                                 int64_t n_events, double bin_width, int T, int B, int N, int K,
                                 OverflowPolicy policy = OverflowPolicy::lowest_ids,
                                 uint64_t seed = 0);

  /// Dense 0/1 [T, B, N] of the spikes (candidates excluded).
  std::vector<float> to_dense() const;

  SpikeView view() const { return {ids_.data(), n_spk_.data(), n_tot_.data(), T_, B_, K_, N_}; }
  int32_t* list(int t, int b) { return ids_.data() + (static_cast<int64_t>(t) * B_ + b) * K_; }
  int32_t& n_spk(int t, int b) { return n_spk_[static_cast<int64_t>(t) * B_ + b]; }
  int32_t& n_tot(int t, int b) { return n_tot_[static_cast<int64_t>(t) * B_ + b]; }

  int T() const { return T_; }
  int B() const { return B_; }
  int K() const { return K_; }
  int N() const { return N_; }
  int64_t dropped() const { return dropped_.spikes; }
  int64_t dropped_candidates() const { return dropped_.candidates; }
  void set_dropped(Drops d) { dropped_ = d; }
  /// Spikes (not candidates) over all lists.
  int64_t total_spikes() const;

  std::vector<int32_t>& ids() { return ids_; }
  std::vector<int32_t>& n_spk() { return n_spk_; }
  std::vector<int32_t>& n_tot() { return n_tot_; }

 private:
  int T_ = 0, B_ = 0, K_ = 0, N_ = 0;
  Drops dropped_;
  std::vector<int32_t> ids_, n_spk_, n_tot_;
};

/// Writes the dense 0/1 [T, B, N] spikes of `view` (candidates excluded) into `dense`.
void to_dense(const SpikeView& view, float* dense);

/// Checks the invariants (ids in range, distinct within a list, n_spk <= n_tot <= K).
/// Throws Error naming `op` and the first offending (t, b, k).
void validate(const SpikeView& view, const char* op);

}  // namespace saltatory
