// The LIF neuron model, written once for every backend (CPU, CUDA, the IPU model and the Poplar
// codelets): its parameters, its state (the membrane V), its forward update, its thresholds and
// its backward carry. Per neuron j of a layer (or of a tile's slice of it):
//   r[t]  = H(V[t-1] - theta1_j)  (reset = state, subtract)  or  1 if j's spike was emitted at t-1
//           (reset = spike)
//   V[t]  = alpha_j V[t-1] (1 - r[t]) + g (1 - alpha_j) I[t]          (state, spike: to zero)
//   V[t]  = alpha_j V[t-1] - theta1_j r[t] + g (1 - alpha_j) I[t]     (subtract)
//   spike: V[t] > theta1_j;   gradient candidate: theta2 < V[t] <= theta1_j
//   gV[t] = m_j[t+1] gV[t+1] + sum over listed entries of gS sigma'(V[t] - theta1_j)
//           m = alpha_j (reset_grad = pass, and always for subtract: r is a detached offset)
//           or  alpha_j (1 - r[t+1]) (mask)
//   gI[t] = g (1 - alpha_j) gV[t]
// Learnable decay and thresholds (direct partials, V[t-1], r[t] and I[t] held fixed):
//   dL/dalpha_j  = sum over t, b of gV[t] (P[t] - g I[t]),  P = V[t-1] (1 - r[t]) (zero reset),
//                  V[t-1] (subtract, readout);  g I[t] = (V[t] - leak[t]) / (1 - alpha_j), leak the
//                  update's first terms. Summed as  M_j - U_j / (1 - alpha_j)  with  M = sum gV P
//                  and  U = sum gV (V - leak),  so no step divides (at alpha_j = 1 the input is not
//                  stored: U is left out)
//   dL/dtheta1_j = - sum over listed entries of gS sigma'(V - theta1_j)  - sum of gV[t] r[t]
//                  (the last term for the subtract reset only; r itself is detached)
// A readout is the same update with r = 0 and m = alpha, without thresholds.
// Per-neuron parameters {alpha, theta1}; state, adjoint and parameter-sum rows (neurons/rows.hpp):
// states {V}, adjoints {gV}, sums {gV P, gV (V - leak), dL/dtheta1 terms}. Backends reach the unit
// through kernels/neurons/model.hpp and handle these by count, without knowing which is which.
// The row functions run over a thread block `Blk` (rank, size, sync): CUDA passes a block of
// threads, the host backends a SerialBlock. Each element is computed by one thread with the same
// operations in the same order on every backend, so results are bitwise equal.
#pragma once

#include "saltatory/kernels/neurons/rows.hpp"

namespace saltatory::kernels::neurons {

/// A LIF layer (or a slice of one): per-neuron decay and spike threshold, layer-wide settings.
struct Lif : Settings {
  static constexpr int kParams = 2;    ///< slots alpha, theta1
  static constexpr int kStates = 1;    ///< V
  static constexpr int kAdjoints = 1;  ///< gV
  static constexpr int kSums = 3;      ///< gV P, gV (V - leak) (dL/dalpha), dL/dtheta1

  const float* alpha;   ///< [n] decay
  const float* theta1;  ///< [n] spike threshold

  /// Whether the unit reads parameter slot `slot`.
  SALTATORY_HD static bool uses(int slot) { return slot == p_alpha || slot == p_theta1; }

  /// The unit over per-neuron parameters {alpha, theta1} and layer settings.
  SALTATORY_HD static Lif of(Params<const float> p, const Settings& s) {
    return {s, p[p_alpha], p[p_theta1]};
  }

  /// r[t] of neuron j from V[t-1] (state reset).
  SALTATORY_HD float state_reset(int j, float v_prev) const {
    return kernels::state_reset(v_prev, theta1[j]);
  }
  /// Which list V[t] of neuron j belongs to.
  SALTATORY_HD Flag flag(int j, float v) const { return flag_of(v, theta1[j], theta2); }
  /// dS/dV of a listed entry of neuron j at membrane v.
  SALTATORY_HD float surrogate_at(int j, float v) const {
    return surrogate_grad(surrogate, v - theta1[j], beta);
  }
  /// dL/dI of neuron j from its membrane gradient.
  SALTATORY_HD float current_grad_of(int j, float gv) const {
    return current_grad(gv, alpha[j], gain);
  }
  /// dL/dalpha of neuron j from its sums over t and b of gV P (`memory`) and of gV (V - leak)
  /// (`input`, g I times 1 - alpha; left out at alpha = 1).
  SALTATORY_HD float alpha_grad(int j, float memory, float input) const {
    const float rest = 1.0f - alpha[j];
    return memory - (rest > 0.0f ? input / rest : 0.0f);
  }
  /// Whether the carry reads which spikes were emitted (mask gradient with spike reset).
  SALTATORY_HD bool carry_reads_emitted() const {
    return !readout && reset_grad == ResetGrad::mask && reset == ResetMode::spike;
  }
  /// Whether the update reads which spikes were emitted (spike reset).
  SALTATORY_HD bool update_reads_emitted() const { return !readout && reset == ResetMode::spike; }
  /// Whether the carry reads the states (the mask gradient with state reset: r[t+1] from V[t]).
  SALTATORY_HD bool carry_reads_states() const {
    return !readout && reset_grad == ResetGrad::mask && reset == ResetMode::state;
  }
};

/// V[t] of one row of n neurons from the input current (`current` may be V[t] itself). `prev`
/// holds V[t-1] (none at t = 0); `emitted` is the footprint of S[t-1] (1 at emitted neurons; read
/// for the spike reset only).
template <class Blk>
SALTATORY_HD void update_row(Blk&& blk, const Lif& m, Rows now, Rows prev, const float* emitted,
                             const float* current, int n) {
  // One loop per case, so that no branch is left per neuron: each is the update above for its case.
  const int first = blk.rank(), step = blk.size();
  const float* alpha = m.alpha;
  const float* theta1 = m.theta1;
  float* v = now[0];
  if (!prev) {
    for (int j = first; j < n; j += step) v[j] = lif_step(0.0f, 0.0f, alpha[j], m.gain, current[j]);
    return;
  }
  const float* v_prev = prev[0];
  if (m.readout) {
    for (int j = first; j < n; j += step)
      v[j] = lif_step(v_prev[j], 0.0f, alpha[j], m.gain, current[j]);
  } else if (m.reset == ResetMode::state) {
    for (int j = first; j < n; j += step)
      v[j] = lif_step(v_prev[j], state_reset(v_prev[j], theta1[j]), alpha[j], m.gain, current[j]);
  } else if (m.reset == ResetMode::spike) {
    for (int j = first; j < n; j += step)
      v[j] = lif_step(v_prev[j], emitted[j], alpha[j], m.gain, current[j]);
  } else {
    for (int j = first; j < n; j += step)
      v[j] = subtract_step(v_prev[j], state_reset(v_prev[j], theta1[j]), alpha[j], theta1[j],
                           m.gain, current[j]);
  }
}

/// The adjoints from step t+1 to step t, before step t's own terms: gV *= dV[t+1]/dV[t], from the
/// states of t and the footprint of S[t] (read for the mask gradient with spike reset).
template <class Blk>
SALTATORY_HD void carry_row(Blk&& blk, const Lif& m, Rows g, Rows at, const float* emitted, int n) {
  // One loop per case, so that no branch is left per neuron: m = dV[t+1]/dV[t] for each case.
  const int first = blk.rank(), step = blk.size();
  const float* alpha = m.alpha;
  float* gv = g[0];
  if (m.readout || m.reset_grad == ResetGrad::pass || m.reset == ResetMode::subtract) {
    for (int j = first; j < n; j += step) gv[j] *= alpha[j];
  } else if (m.reset == ResetMode::state) {
    const float* v = at[0];
    const float* theta1 = m.theta1;
    for (int j = first; j < n; j += step)
      gv[j] *= carry_factor(alpha[j], kernels::state_reset(v[j], theta1[j]), ResetGrad::mask);
  } else {  // spike reset: r[t+1] is the footprint of S[t]
    for (int j = first; j < n; j += step)
      gv[j] *= carry_factor(alpha[j], emitted[j], ResetGrad::mask);
  }
}

/// gV[ids_k] += gS[k] sigma'(V[ids_k] - theta1) over a list's entries k < n_tot, for the entries
/// of neurons [j0, j1) (g, at and sums hold that slice), and the same term off the dL/dtheta1 sum
/// when sums are kept; ids are distinct, so each neuron is updated by one thread, entries in
/// ascending k.
template <class Blk>
SALTATORY_HD void state_grad_row(Blk&& blk, const Lif& m, Rows g, Rows at, const int32_t* ids,
                                 const float* gs, int n_tot, int32_t j0 = 0,
                                 int32_t j1 = 0x7FFFFFFF, Rows sums = {}) {
  float* gv = g[0];
  const float* v = at[0];
  float* dtheta1 = sums ? sums[2] : nullptr;
  for (int k = blk.rank(); k < n_tot; k += blk.size()) {
    const int32_t j = ids[k];
    if (j < j0 || j >= j1) continue;
    const float term = gs[k] * m.surrogate_at(j - j0, v[j - j0]);
    gv[j - j0] += term;
    if (dtheta1 != nullptr) dtheta1[j - j0] -= term;
  }
}

/// Dense mode's surrogate terms: gV_j += gS_j sigma'(V_j - theta1_j) at every neuron a list would
/// hold (a spike or a candidate), from dense entry gradients gS [n], and the same term off the
/// dL/dtheta1 sum when sums are kept.
template <class Blk>
SALTATORY_HD void dense_state_grad_row(Blk&& blk, const Lif& m, Rows g, Rows at, const float* gs,
                                       int n, Rows sums = {}) {
  float* gv = g[0];
  const float* v = at[0];
  float* dtheta1 = sums ? sums[2] : nullptr;
  for (int j = blk.rank(); j < n; j += blk.size())
    if (m.flag(j, v[j]) != none) {
      const float term = gs[j] * m.surrogate_at(j, v[j]);
      gv[j] += term;
      if (dtheta1 != nullptr) dtheta1[j] -= term;
    }
}

/// body(j, reset) over the block's neurons j < n, where reset(v_prev) is r[t] of neuron j's zero
/// reset from V[t-1] (the state reset) or the footprint `emitted` of S[t-1] (the spike reset): one
/// loop per reset mode, so that no branch is left per neuron and the loop vectorises. The loop of
/// the update and parameter rows of units that reset as the LIF to zero.
template <class Blk, class Body>
SALTATORY_HD void for_zero_reset(Blk&& blk, const Lif& m, const float* emitted, int n,
                                 Body&& body) {
  const int first = blk.rank(), step = blk.size();
  if (m.reset == ResetMode::spike) {
    SALTATORY_NO_ALIAS
    for (int j = first; j < n; j += step) body(j, [&](float) { return emitted[j]; });
  } else {
    const float* theta1 = m.theta1;
    SALTATORY_NO_ALIAS
    for (int j = first; j < n; j += step)
      body(j, [&](float v_prev) { return kernels::state_reset(v_prev, theta1[j]); });
  }
}

/// The surrogate terms of a list's entries k < n_tot of neurons [j0, j1) (the rows hold that slice),
/// as entry(j - j0, gs[k]); ids are distinct, so each neuron is updated by one thread, entries in
/// ascending k. The loop of state_grad_row for units whose term is more than the LIF's.
template <class Blk, class Entry>
SALTATORY_HD void for_listed(Blk&& blk, const int32_t* ids, const float* gs, int n_tot, int32_t j0,
                             int32_t j1, Entry&& entry) {
  for (int k = blk.rank(); k < n_tot; k += blk.size()) {
    const int32_t j = ids[k];
    if (j >= j0 && j < j1) entry(j - j0, gs[k]);
  }
}

/// Dense mode's loop: entry(j, gs[j]) at every neuron a list would hold (a spike or a candidate of
/// the membrane in row 0 of `at`).
template <class Blk, class Entry>
SALTATORY_HD void for_flagged(Blk&& blk, const Lif& m, Rows at, const float* gs, int n,
                              Entry&& entry) {
  for (int j = blk.rank(); j < n; j += blk.size())
    if (m.flag(j, at[0][j]) != none) entry(j, gs[j]);
}

/// The surrogate term of neuron j for entry gradient `gs` plus the adaptation's share of it held
/// in adjoint row 2 (consumed: a second pass over the same list adds no share), added to gV and
/// off the dL/dtheta1 sum; returns the term. The adaptive units' surrogate entry.
SALTATORY_HD float adapted_entry(const Lif& m, int j, float gs, Rows g, Rows at, Rows sums) {
  const float term = (gs + g[2][j]) * m.surrogate_at(j, at[0][j]);
  g[2][j] = 0.0f;
  g[0][j] += term;
  if (sums) sums[2][j] -= term;
  return term;
}

/// Adds step t's direct terms to the per-neuron parameter sums (gV P, gV (V - leak), dL/dtheta1)
/// from the complete adjoints of t, the states of t-1 (none at t = 0), the footprint of S[t-1]
/// (spike reset) and the states of t.
template <class Blk>
SALTATORY_HD void parameter_grad_row(Blk&& blk, const Lif& m, Rows sums, Rows g, Rows prev,
                                     const float* emitted, Rows now, int n) {
  // A loop per case, branch-free per neuron: P and the leak (the update without its input) differ.
  const int first = blk.rank(), step = blk.size();
  const float* alpha = m.alpha;
  const float* theta1 = m.theta1;
  const float* gv = g[0];
  const float* v = now[0];
  float* memory = sums[0];
  float* input = sums[1];
  if (!prev) {  // V[-1] = 0: P = leak = 0
    for (int j = first; j < n; j += step) input[j] += gv[j] * v[j];
    return;
  }
  const float* v_prev = prev[0];
  if (m.readout) {
    SALTATORY_NO_ALIAS
    for (int j = first; j < n; j += step) {
      memory[j] += gv[j] * v_prev[j];
      input[j] += gv[j] * (v[j] - alpha[j] * v_prev[j]);
    }
  } else if (m.reset == ResetMode::subtract) {
    float* dtheta1 = sums[2];
    SALTATORY_NO_ALIAS
    for (int j = first; j < n; j += step) {
      const float r = state_reset(v_prev[j], theta1[j]);
      const float leak = alpha[j] * v_prev[j] - theta1[j] * r;
      memory[j] += gv[j] * v_prev[j];
      input[j] += gv[j] * (v[j] - leak);
      dtheta1[j] -= gv[j] * r;
    }
  } else if (m.reset == ResetMode::state) {
    SALTATORY_NO_ALIAS
    for (int j = first; j < n; j += step) {
      const float p = v_prev[j] * (1.0f - state_reset(v_prev[j], theta1[j]));
      memory[j] += gv[j] * p;
      input[j] += gv[j] * (v[j] - alpha[j] * p);
    }
  } else {  // spike reset: r[t] is the footprint of S[t-1]
    SALTATORY_NO_ALIAS
    for (int j = first; j < n; j += step) {
      const float p = v_prev[j] * (1.0f - emitted[j]);
      memory[j] += gv[j] * p;
      input[j] += gv[j] * (v[j] - alpha[j] * p);
    }
  }
}

/// dL/dalpha_j and dL/dtheta1_j added into grads {alpha, theta1} (either may be null) from the
/// sums of neuron j, already summed over t and b ([kSums, n]: row i at sums + i n).
SALTATORY_HD void add_parameter_grads(const Lif& m, int j, const float* sums, int n,
                                      Params<float> grads) {
  if (grads[p_alpha] != nullptr) grads[p_alpha][j] += m.alpha_grad(j, sums[j], sums[n + j]);
  if (grads[p_theta1] != nullptr && !m.readout) grads[p_theta1][j] += sums[2 * n + j];
}

/// Completes the adjoints of step t after its surrogate terms (a unit whose internal variables
/// take from gV adds that here; the LIF has none) and writes gI = dL/dI over one row. Backends
/// call it before parameter_grad_row.
template <class Blk>
SALTATORY_HD void current_grad_row(Blk&& blk, const Lif& m, float* gi, Rows g, int n) {
  const float* gv = g[0];
  for (int j = blk.rank(); j < n; j += blk.size()) gi[j] = m.current_grad_of(j, gv[j]);
}

}  // namespace saltatory::kernels::neurons
