// Kernel bodies of the CUDA backend, written once against a thread block `Blk` (rank, size, sync,
// exclusive_sum) so that nvcc runs them on the GPU and tests run them on the CPU through an
// emulated block of threads with barriers. Per-element math is the shared kernels/ code, called in
// the CPU backend's order, so sums round identically (no FMA contraction on either side).
// Layouts: the model's states and current gradients [T, B, N] each; lists [T, B, K]; W input-major.
// Continuing a sequence, step -1's states and lists are the initial state's (Layer::initial,
// Lists::ids_before).
//   forward step (one block per sample b):
//     I = bias + sum_{k<n_spk(S_in[t'])} W[ids_k, :] + sum_{k<n_spk(S[t-1])} W_rec[ids_k, :]
//     states[t] = the neuron model's update_row (kernels/neurons/model.hpp);  S[t] = two-threshold
//     selection of the membrane, in id order by block-wide prefix sums over tiles of `size` neurons
//   backward step (one block per sample b, t = T-1..0): the model's carry_row, its state_grad_row
//     over the entries with gradients gS[k] + gRec[k] (V[t] from the states, or only at the entries
//     from the values the forward kept there), current_grad_row (gI), parameter_grad_row;
//     gRec[k] = W_rec[ids_k, :] . gI   k < n_tot(S[t-1])
//   element bodies (one thread per index): input-entry gradients, the spikes-by-neuron grouping
//   of the weight gradient (keys chunk * N_in + i, stably sorted), dW columns, dbias columns.
#pragma once

#include <cstdint>

#include "backends/common/model.hpp"
#include "saltatory/kernels/neurons/model.hpp"
#include "saltatory/kernels/select.hpp"
#include "saltatory/kernels/sparse.hpp"
#include "saltatory/ops/lif_stack.hpp"

namespace saltatory::cuda {

/// Lists [T, B, K] with counts [T, B], in device memory, and (continuing from a state) the
/// initial state's spikes of step -1, [B, K] with counts [B].
struct Lists {
  int32_t* ids = nullptr;
  int32_t* n_spk = nullptr;
  int32_t* n_tot = nullptr;
  int K = 0;
  int B = 0;
  const int32_t* ids_before = nullptr;    ///< null: the call starts from rest
  const int32_t* n_spk_before = nullptr;  ///< [B]

  SALTATORY_HD int64_t at(int t, int b) const { return static_cast<int64_t>(t) * B + b; }
  SALTATORY_HD int32_t* list(int t, int b) const { return ids + at(t, b) * K; }
  /// Whether step t has lists (t >= 0, or t = -1 continuing from a state).
  SALTATORY_HD bool has(int t) const { return t >= 0 || (t == -1 && ids_before != nullptr); }
  /// The spike ids of list (t, b), for a step that `has`.
  SALTATORY_HD const int32_t* spikes_of(int t, int b) const {
    return t >= 0 ? list(t, b) : ids_before + static_cast<int64_t>(b) * K;
  }
  /// The spikes of list (t, b), 0 for a step before the lists.
  SALTATORY_HD int spikes(int t, int b) const {
    return t >= 0 ? n_spk[at(t, b)] : (has(t) ? n_spk_before[b] : 0);
  }
};

/// One layer of a call: configuration, device parameters, lists and membranes.
struct Layer {
  LayerConfig c;
  const float* w = nullptr;      ///< [n_in, n]
  const float* w_rec = nullptr;  ///< [n, n] (recurrent)
  const float* bias = nullptr;   ///< [n] or null
  /// The model's per-neuron parameters [n] each (common::neuron_params' order)
  kernels::neurons::Params<const float> neuron;
  Lists in;       ///< the lists this layer consumes
  int delay = 0;  ///< step t reads input step t - delay
  Lists out;      ///< own lists (ids null for a readout)
  /// The model's state rows of steps v_first, v_first + 1, ... (each [B, n]), one block per state
  /// variable, `state_stride` floats apart; the first is V.
  float* v = nullptr;  ///< null: a backward that reads `listed` instead
  int64_t state_stride = 0;
  int v_first = 0;  ///< 0 for a whole-sequence buffer, t0 - 1 for a window's
  int T = 0;
  int B = 0;
  OverflowPolicy overflow = OverflowPolicy::lowest_ids;
  uint64_t seed = 0;  ///< stream seed of this layer's overflow policy
  /// The initial state's model states [states(), B, n] (null: the call starts from rest), and
  /// the absolute step of step 0 (the overflow streams continue from it).
  const float* initial = nullptr;
  int64_t first_step = 0;
  /// V at every entry of the own lists [T, B, K], or null: a selecting forward keeps it there,
  /// and a backward with no learnable neuron parameter reads it instead of the states
  float* listed = nullptr;

  SALTATORY_HD bool readout() const { return c.kind == LayerKind::readout; }
  /// The layer's neuron model over device memory.
  SALTATORY_HD kernels::neurons::Model model() const { return common::layer_model(c, neuron); }
  SALTATORY_HD bool recurrent() const { return c.kind == LayerKind::recurrent_lif; }
  /// Row (t, b) of a [steps, B, n] buffer whose first row is step `first`.
  template <class F>
  SALTATORY_HD F* row(F* x, int t, int b, int first = 0) const {
    return x + (static_cast<int64_t>(t - first) * B + b) * c.n_out;
  }
  SALTATORY_HD float* vrow(int t, int b) const { return row(v, t, b, v_first); }
  /// The state rows of (t, b); before the buffer's first step, the initial state's.
  SALTATORY_HD kernels::neurons::Rows states(int t, int b) const {
    if (v == nullptr) return {};  // not kept: backward reads `listed`
    if (t < v_first)
      return kernels::neurons::Rows::strided(
          const_cast<float*>(initial) + static_cast<int64_t>(b) * c.n_out,
          static_cast<int64_t>(B) * c.n_out, model().states());
    return kernels::neurons::Rows::strided(vrow(t, b), state_stride, model().states());
  }
  /// Whether step t has a step t - 1: t > 0, or t = 0 continuing from a state.
  SALTATORY_HD bool has_prev(int t) const { return t > 0 || initial != nullptr; }
};

/// Per-sample scratch of the step bodies (device memory, one slice per sample).
struct Scratch {
  float* flags;           ///< [B, n], zero between uses (spike reset footprint)
  int32_t* found;         ///< [B, 2 n] (selection compaction)
  uint64_t* priority;     ///< [B, K] (random overflow policy)
  float* adjoints;        ///< [adjoints(), B, n] the model's carried adjoints
  float* grad_rec;        ///< [B, K] gradients of S[t-1]'s entries through W_rec
  float* sums = nullptr;  ///< [sums(), B, n] the model's per-sample parameter sums, or null
  /// [B, n], NaN between uses: V[t] at the entries of S[t] (a backward from Layer::listed)
  float* membrane = nullptr;
  int64_t sample_rows = 0;  ///< B n: the stride between the variables of adjoints and sums

  /// Sample b's adjoint and sum rows of model m.
  SALTATORY_HD kernels::neurons::Rows adjoint_rows(const kernels::neurons::Model& m, int b,
                                                   int n) const {
    return kernels::neurons::Rows::strided(adjoints + static_cast<int64_t>(b) * n, sample_rows,
                                           m.adjoints());
  }
  SALTATORY_HD kernels::neurons::Rows sum_rows(const kernels::neurons::Model& m, int b,
                                               int n) const {
    return kernels::neurons::Rows::strided(
        sums != nullptr ? sums + static_cast<int64_t>(b) * n : nullptr, sample_rows, m.sums());
  }
};

/// The first problem of list `list` of `s` over N neurons (the invariants of core/spikes.hpp):
/// 0 none; else kind | k << 2 with kind 1 (counts), 2 (id k out of range), 3 (id k repeated).
SALTATORY_HD int64_t list_problem(const Lists& s, int N, int64_t list) {
  const int n_spk = s.n_spk[list], n_tot = s.n_tot[list];
  if (!(0 <= n_spk && n_spk <= n_tot && n_tot <= s.K)) return 1;
  const int32_t* ids = s.ids + list * s.K;
  for (int k = 0; k < n_tot; ++k) {
    if (ids[k] < 0 || ids[k] >= N) return 2 | static_cast<int64_t>(k) << 2;
    for (int i = 0; i < k; ++i)
      if (ids[i] == ids[k]) return 3 | static_cast<int64_t>(k) << 2;
  }
  return 0;
}

/// Sets (1) or clears (0) the footprint of list (t, b)'s spikes in `flags` (t = -1: the initial
/// state's).
template <class Blk>
SALTATORY_HD void footprint(Blk& blk, const Lists& s, int t, int b, float* flags, float value) {
  const int32_t* ids = s.spikes_of(t, b);
  for (int k = blk.rank(); k < s.spikes(t, b); k += blk.size()) flags[ids[k]] = value;
}

/// Two-threshold selection of V[t, b] into list (t, b); returns the dropped entries (on rank 0).
template <class Blk>
SALTATORY_HD kernels::Drops select_list(Blk& blk, const Layer& L, int t, int b, const float* v,
                                        int32_t* found, uint64_t* priority) {
  const int n = L.c.n_out;
  const kernels::neurons::Model m = L.model();
  int32_t* spikes = found;
  int32_t* candidates = found + n;
  int n_above = 0, n_between = 0;  // the same on every thread
  for (int base = 0; base < n; base += blk.size()) {
    const int j = base + blk.rank();
    int flag = 0;  // spike in the low half, candidate in the high half
    if (j < n) {
      const kernels::neurons::Flag f = m.flag(j, v[j]);
      flag =
          (f == kernels::neurons::spike ? 1 : 0) | (f == kernels::neurons::candidate ? 1 << 16 : 0);
    }
    int total = 0;
    const int before = blk.exclusive_sum(flag, total);
    if (flag & 0xFFFF) spikes[n_above + (before & 0xFFFF)] = j;
    if (flag >> 16) candidates[n_between + (before >> 16)] = j;
    n_above += total & 0xFFFF;
    n_between += total >> 16;
  }
  blk.sync();
  const int cap = L.out.K;
  const int n_spk = n_above < cap ? n_above : cap;
  const int n_cand = n_between < cap - n_spk ? n_between : cap - n_spk;
  int32_t* out = L.out.list(t, b);
  const uint64_t stream = kernels::list_stream(L.seed, L.first_step + t, b);
  const bool random = L.overflow == OverflowPolicy::random;
  // Groups that fit (or keep their lowest ids) are copied in parallel; a random subset is drawn
  // by one thread with the CPU's keep_subset.
  for (int i = blk.rank(); i < n_spk; i += blk.size())
    if (!random || n_above <= cap) out[i] = spikes[i];
  for (int i = blk.rank(); i < n_cand; i += blk.size())
    if (!random || n_between <= cap - n_spk) out[n_spk + i] = candidates[i];
  if (blk.rank() == 0) {
    if (random && n_above > cap)
      kernels::keep_subset(spikes, n_above, out, cap, L.overflow, stream, priority);
    if (random && n_between > cap - n_spk)
      kernels::keep_subset(candidates, n_between, out + n_spk, cap - n_spk, L.overflow,
                           kernels::mix64(stream + 1), priority);
    L.out.n_spk[L.out.at(t, b)] = n_spk;
    L.out.n_tot[L.out.at(t, b)] = n_spk + n_cand;
  }
  blk.sync();
  return {n_above - n_spk, n_between - n_cand};
}

/// Forward step t of sample b: current (from `current` [T, B, n] when given, else the sparse
/// gathers), membrane update and, for spiking layers when `select`, selection (a recompute
/// replays the step on lists already selected). Returns the dropped entries (on rank 0).
template <class Blk>
SALTATORY_HD kernels::Drops forward_step(Blk& blk, const Layer& L, int t, int b,
                                         const float* current, const Scratch& s,
                                         bool select = true) {
  const LayerConfig& c = L.c;
  const int n = c.n_out;
  const kernels::neurons::Model m = L.model();
  float* flags = s.flags + static_cast<int64_t>(b) * n;
  const bool spike_reset = m.update_reads_emitted() && L.has_prev(t);
  if (spike_reset) {
    footprint(blk, L.out, t - 1, b, flags, 1.0f);
    blk.sync();
  }
  const kernels::neurons::Rows now = L.states(t, b);
  const kernels::neurons::Rows prev = L.has_prev(t) ? L.states(t - 1, b) : kernels::neurons::Rows{};
  const int t_in = t - L.delay;
  if (current == nullptr) {  // the current into V[t], each thread its own neurons
    float* in = now[0];
    for (int j = blk.rank(); j < n; j += blk.size()) {
      in[j] = L.bias != nullptr ? L.bias[j] : 0.0f;
      if (L.in.has(t_in))
        kernels::gather_rows(in + j, L.w + j, n, L.in.spikes_of(t_in, b), L.in.spikes(t_in, b), 1);
      if (L.recurrent() && L.out.has(t - 1))
        kernels::gather_rows(in + j, L.w_rec + j, n, L.out.spikes_of(t - 1, b),
                             L.out.spikes(t - 1, b), 1);
    }
  }
  // each thread updates the neurons whose current it summed
  kernels::neurons::update_row(blk, m, now, prev, flags,
                               current != nullptr ? L.row(current, t, b) : now[0], n);
  blk.sync();
  if (spike_reset) {  // cleared before any thread sets the next step's footprint
    footprint(blk, L.out, t - 1, b, flags, 0.0f);
    blk.sync();
  }
  if (L.readout() || !select) return {};
  const kernels::Drops dropped =
      select_list(blk, L, t, b, now[0], s.found + static_cast<int64_t>(b) * 2 * n,
                  s.priority + static_cast<int64_t>(b) * L.out.K);
  if (L.listed != nullptr) {  // V at the new list's entries (select_list ended on a sync)
    const int64_t list = L.out.at(t, b);
    for (int k = blk.rank(); k < L.out.n_tot[list]; k += blk.size())
      kernels::gather_values(L.listed + list * L.out.K + k, now[0], L.out.list(t, b) + k, 1);
  }
  return dropped;
}

/// The model's adjoints of sample b carried from step t + 1 to step t (t < T - 1).
template <class Blk>
SALTATORY_HD void carry_step(Blk& blk, const Layer& L, int t, int b, kernels::neurons::Rows g,
                             float* flags) {
  const kernels::neurons::Model m = L.model();
  const bool emitted = m.carry_reads_emitted();  // r[t+1] = emitted at t
  if (emitted) {
    footprint(blk, L.out, t, b, flags, 1.0f);
    blk.sync();
  }
  kernels::neurons::carry_row(blk, m, g, L.states(t, b), flags, L.c.n_out);
  blk.sync();
  if (emitted) {
    footprint(blk, L.out, t, b, flags, 0.0f);
    blk.sync();
  }
}

/// Adds step t's direct terms to the model's parameter sums of sample b (its adjoints of t
/// complete; the footprint of S[t-1] in `flags` for the spike reset), when sums are kept.
template <class Blk>
SALTATORY_HD void parameter_grad_step(Blk& blk, const Layer& L, int t, int b,
                                      kernels::neurons::Rows g, float* flags, const Scratch& s) {
  const kernels::neurons::Model m = L.model();
  const int n = L.c.n_out;
  const kernels::neurons::Rows sums = s.sum_rows(m, b, n);
  if (!sums) return;
  const bool emitted = L.has_prev(t) && m.update_reads_emitted();
  if (emitted) {
    footprint(blk, L.out, t - 1, b, flags, 1.0f);
    blk.sync();
  }
  kernels::neurons::parameter_grad_row(
      blk, m, sums, g, L.has_prev(t) ? L.states(t - 1, b) : kernels::neurons::Rows{}, flags,
      L.states(t, b), n);
  blk.sync();
  if (emitted) {
    footprint(blk, L.out, t - 1, b, flags, 0.0f);
    blk.sync();
  }
}

/// The sparse backward time recursion of sample b over steps [t0, t1), latest first, carrying gV
/// and gRec in `s` from step t1 and leaving them for step t0 - 1: writes gI rows into
/// `grad_current` [t1 - t0, B, n]. grad_out: [T, B, K] entries, or [T, B, n] for a readout.
template <class Blk>
SALTATORY_HD void backward_sample(Blk& blk, const Layer& L, int b, int t0, int t1,
                                  const float* grad_out, float* grad_current, const Scratch& s) {
  const kernels::neurons::Model m = L.model();
  const int n = L.c.n_out;
  const int k_out = L.readout() ? n : L.out.K;
  const kernels::neurons::Rows g = s.adjoint_rows(m, b, n), sums = s.sum_rows(m, b, n);
  float* flags = s.flags + static_cast<int64_t>(b) * n;
  float* grad_rec = s.grad_rec + static_cast<int64_t>(b) * L.out.K;
  for (int t = t1 - 1; t >= t0; --t) {
    if (t < L.T - 1) carry_step(blk, L, t, b, g, flags);
    const float* go = grad_out + (static_cast<int64_t>(t) * L.B + b) * k_out;
    if (L.readout()) {
      for (int j = blk.rank(); j < n; j += blk.size()) kernels::add_row(g[0] + j, go + j, 1);
    } else {
      kernels::neurons::Rows at = L.states(t, b);
      const int32_t* ids = L.out.list(t, b);
      const int n_tot = L.out.n_tot[L.out.at(t, b)];
      float* membrane = nullptr;
      if (L.listed != nullptr) {  // V[t] at the entries of S[t], NaN elsewhere
        membrane = s.membrane + static_cast<int64_t>(b) * n;
        const float* kept = L.listed + L.out.at(t, b) * L.out.K;
        for (int k = blk.rank(); k < n_tot; k += blk.size())
          kernels::scatter_values(membrane, ids + k, kept + k, 1);
        blk.sync();
        at = kernels::neurons::Rows::strided(membrane, n, 1);
      }
      // ids are distinct, so each entry's neuron is updated by one thread, in the CPU's order
      kernels::neurons::state_grad_row(blk, m, g, at, ids, go, n_tot, 0, n, sums);
      if (L.recurrent() && t < L.T - 1)
        kernels::neurons::state_grad_row(blk, m, g, at, ids, grad_rec, n_tot, 0, n, sums);
      if (L.listed != nullptr) {
        blk.sync();
        for (int k = blk.rank(); k < n_tot; k += blk.size())
          kernels::scatter_value(membrane, ids + k, 1, kernels::kNotListed);
      }
    }
    blk.sync();
    float* gi = L.row(grad_current, t, b, t0);
    kernels::neurons::current_grad_row(blk, m, gi, g, n);  // completes the adjoints of t
    blk.sync();
    parameter_grad_step(blk, L, t, b, g, flags, s);
    if (L.recurrent() && t > 0) {
      const int32_t* prev = L.out.list(t - 1, b);
      for (int k = blk.rank(); k < L.out.n_tot[L.out.at(t - 1, b)]; k += blk.size())
        grad_rec[k] = kernels::dot_row(L.w_rec + static_cast<int64_t>(prev[k]) * n, gi, n);
      blk.sync();
    }
  }
}

/// Dense-mode backward step t of sample b: `grad_spikes` [B, n] holds gI[t+1] W_rec^T (or
/// zeros); the entries' gradients are scattered into it and pass the masked surrogate.
template <class Blk>
SALTATORY_HD void dense_backward_step(Blk& blk, const Layer& L, int t, int b, const float* grad_out,
                                      float* grad_spikes, float* grad_current, const Scratch& s) {
  const kernels::neurons::Model m = L.model();
  const int n = L.c.n_out;
  const int k_out = L.readout() ? n : L.out.K;
  const kernels::neurons::Rows g = s.adjoint_rows(m, b, n);
  if (t < L.T - 1) carry_step(blk, L, t, b, g, s.flags + static_cast<int64_t>(b) * n);
  const float* go = grad_out + (static_cast<int64_t>(t) * L.B + b) * k_out;
  if (L.readout()) {
    for (int j = blk.rank(); j < n; j += blk.size()) kernels::add_row(g[0] + j, go + j, 1);
  } else {
    float* gs = grad_spikes + static_cast<int64_t>(b) * n;
    const int32_t* ids = L.out.list(t, b);
    for (int k = blk.rank(); k < L.out.n_tot[L.out.at(t, b)]; k += blk.size()) gs[ids[k]] += go[k];
    blk.sync();
    kernels::neurons::dense_state_grad_row(blk, m, g, L.states(t, b), gs, n, s.sum_rows(m, b, n));
  }
  blk.sync();
  kernels::neurons::current_grad_row(blk, m, L.row(grad_current, t, b), g, n);  // completes them
  blk.sync();
  parameter_grad_step(blk, L, t, b, g, s.flags + static_cast<int64_t>(b) * n, s);
}

/// Input-entry gradient of entry k of the input list that feeds list (t, b), list = (t - t0) B + b
/// of a window starting at t0: grad_input[t', b, k] += W[ids_k, :] . gI[t, b] (gI rows numbered
/// from the window's first list).
SALTATORY_HD void input_entry_grad(const Layer& L, int t0, int64_t list, int k,
                                   const float* grad_current, float* grad_input) {
  const int t_in = t0 + static_cast<int>(list / L.B) - L.delay;
  const int b = static_cast<int>(list % L.B);
  if (t_in < 0 || k >= L.in.n_tot[L.in.at(t_in, b)]) return;
  const int n = L.c.n_out;
  const float dot = kernels::dot_row(L.w + static_cast<int64_t>(L.in.list(t_in, b)[k]) * n,
                                     grad_current + list * n, n);
  kernels::add_row(grad_input + L.in.at(t_in, b) * L.in.K + k, &dot, 1);
}

/// The spikes feeding the weight gradient of the window [t0, t1), grouped as the CPU groups them
/// (common::SpikesByNeuron): list (t, b), numbered (t - t0) B + b, is fed by the spikes of `s` at
/// step t - delay; chunks hold `chunk_steps` steps from t0.
struct Feeding {
  Lists s;
  int delay;
  int t0, t1;
  int N;  ///< neurons of s
  int chunk_steps;

  SALTATORY_HD int chunks() const { return (t1 - t0 + chunk_steps - 1) / chunk_steps; }
  /// Spikes feeding list `list` (those of step -1 from the initial state, when there is one).
  SALTATORY_HD int count(int64_t list) const {
    const int t = t0 + static_cast<int>(list / s.B);
    return s.spikes(t - delay, static_cast<int>(list % s.B));
  }
  /// Writes the (key, list) pairs of list `list`'s spike k at `offset` + k: key = chunk N + i.
  SALTATORY_HD void pair(int64_t list, int k, const int64_t* offset, int64_t* keys,
                         int32_t* lists) const {
    if (k >= count(list)) return;
    const int t = t0 + static_cast<int>(list / s.B);
    const int32_t i = s.spikes_of(t - delay, static_cast<int>(list % s.B))[k];
    keys[offset[list] + k] = static_cast<int64_t>((t - t0) / chunk_steps) * N + i;
    lists[offset[list] + k] = static_cast<int32_t>(list);
  }
};

/// start[key] = the first position of `key` in the sorted keys[0:n] (n when none is >= key).
SALTATORY_HD void group_start(int64_t key, const int64_t* keys, int64_t n, int64_t* start) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] < key)
      lo = mid + 1;
    else
      hi = mid;
  }
  start[key] = lo;
}

/// dW[i, col] += gI[list, col] over the lists i fed, chunk by chunk, latest first (rows of `dw`
/// have n_out entries; `lists` are grouped by key with `start`).
SALTATORY_HD void weight_grad_column(const Feeding& f, int i, int col, int n_out,
                                     const float* grad_current, const int64_t* start,
                                     const int32_t* lists, float* dw) {
  float acc = dw[static_cast<int64_t>(i) * n_out + col];
  for (int chunk = f.chunks(); chunk-- > 0;) {
    const int64_t key = static_cast<int64_t>(chunk) * f.N + i;
    kernels::gather_rows(&acc, grad_current + col, n_out, lists + start[key],
                         static_cast<int>(start[key + 1] - start[key]), 1);
  }
  dw[static_cast<int64_t>(i) * n_out + col] = acc;
}

/// dbias[col] += gI[list, col] over all lists, latest first.
SALTATORY_HD void bias_grad_column(int col, int n_out, int64_t lists, const float* grad_current,
                                   float* dbias) {
  float acc = dbias[col];
  for (int64_t list = lists; list-- > 0;)
    kernels::add_row(&acc, grad_current + list * n_out + col, 1);
  dbias[col] = acc;
}

}  // namespace saltatory::cuda
