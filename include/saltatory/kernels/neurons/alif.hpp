// The adaptive-threshold LIF (ALIF, the LSNN neuron of Bellec et al. 2018): each spike raises the
// neuron's threshold, which decays back with its own per-neuron factor. Per neuron j:
//   a[t]     = rho_j a[t-1] + (1 - rho_j) S[t-1]          (a[-1] = 0; S the emitted spikes)
//   theta[t] = theta1_j + b_j a[t]
//   V[t]     = alpha_j V[t-1] (1 - r[t]) + g (1 - alpha_j) I[t],  r[t] = H(V[t-1] - theta[t-1])
//              (reset = state) or j's spike of t-1 emitted (reset = spike)
//   spike V[t] > theta[t];  gradient candidate theta[t] - (theta1_j - theta2) < V[t] <= theta[t]
// The unit stores u = V - b a, so that selection, the state reset and the surrogate are the LIF's
// on u against theta1 and theta2, and every backend selects as for any model.
// Backward, gE[t] the gradient of an entry of S[t] and sigma' = sigma'(u[t] - theta1_j):
//   gV[t] = m gV[t+1] + sum over listed entries of (gE[t] + (1 - rho_j) ga[t+1]) sigma'
//   ga[t] = rho_j ga[t+1] - b_j sum over listed entries of (gE[t] + (1 - rho_j) ga[t+1]) sigma'
//           (a spike feeds the next step's adaptation; at listed entries only, as every gradient)
//   gI[t] = g (1 - alpha_j) gV[t];  m, dL/dalpha_j and dL/dtheta1_j: the LIF's (on V = u + b a)
//   dL/drho_j = sum over t, b of ga[t] (a[t-1] - S[t-1]);  dL/db_j = - sum of the listed terms a[t]
// Per-neuron parameters alpha, theta1, rho, b (neurons/rows.hpp's slots); states {u, a};
// adjoints {gV, ga, f} with f = (1 - rho) ga[t+1], the adaptation's share of step t's entry
// gradients, consumed by the first surrogate term of each neuron (so that a second pass over other
// entry gradients, the recurrent ones, does not add it twice); sums the LIF's three, then the rho
// and b terms.
#pragma once

#include "saltatory/kernels/neurons/lif.hpp"

namespace saltatory::kernels::neurons {

/// An ALIF layer (or a slice of one). The subtract reset is not modelled (the op layer refuses it).
struct Alif {
  static constexpr int kParams = 5;    ///< slots alpha, theta1, (alpha_syn unused), rho, b
  static constexpr int kStates = 2;    ///< u = V - b a, a
  static constexpr int kAdjoints = 3;  ///< gV, ga, the adaptation's share f of the entry gradients
  static constexpr int kSums = 5;      ///< the LIF's three, dL/drho, dL/db

  Lif membrane;      ///< the LIF over {alpha, theta1}, on u
  const float* rho;  ///< [n] adaptation decay
  const float* b;    ///< [n] adaptation strength

  SALTATORY_HD static bool uses(int slot) {
    return Lif::uses(slot) || slot == p_rho || slot == p_b;
  }
  SALTATORY_HD static Alif of(Params<const float> p, const Settings& s) {
    return {Lif::of(p, s), p[p_rho], p[p_b]};
  }
  SALTATORY_HD bool carry_reads_emitted() const { return membrane.carry_reads_emitted(); }
  SALTATORY_HD bool carry_reads_states() const { return membrane.carry_reads_states(); }
  /// The adaptation reads which spikes were emitted.
  SALTATORY_HD bool update_reads_emitted() const { return true; }
};

/// a[t] from the footprint of S[t-1], V[t] by the LIF update from V[t-1] = u + b a, u[t] = V - b a.
template <class Blk>
SALTATORY_HD void update_row(Blk&& blk, const Alif& m, Rows now, Rows prev, const float* emitted,
                             const float* current, int n) {
  const Lif& lif = m.membrane;
  float *u = now[0], *a = now[1];
  if (!prev) {  // a[0] = 0: u = V
    for (int j = blk.rank(); j < n; j += blk.size()) {
      a[j] = 0.0f;
      u[j] = lif_step(0.0f, 0.0f, lif.alpha[j], lif.gain, current[j]);
    }
    return;
  }
  const float *u_prev = prev[0], *a_prev = prev[1];
  for_zero_reset(blk, lif, emitted, n, [&](int j, auto reset) {
    const float v = lif_step(u_prev[j] + m.b[j] * a_prev[j], reset(u_prev[j]), lif.alpha[j],
                             lif.gain, current[j]);
    const float adapt = m.rho[j] * a_prev[j] + (1.0f - m.rho[j]) * emitted[j];
    a[j] = adapt;
    u[j] = v - m.b[j] * adapt;
  });
}

/// The LIF's carry of gV (its reset decided on u); f = (1 - rho) ga[t+1], then ga *= rho.
template <class Blk>
SALTATORY_HD void carry_row(Blk&& blk, const Alif& m, Rows g, Rows at, const float* emitted,
                            int n) {
  carry_row(blk, m.membrane, g, at, emitted, n);
  float *ga = g[1], *f = g[2];
  for (int j = blk.rank(); j < n; j += blk.size()) {
    f[j] = (1.0f - m.rho[j]) * ga[j];
    ga[j] *= m.rho[j];
  }
}

/// The surrogate term (the LIF's, plus the adaptation's share) of neuron j into gV, ga and the
/// dL/dtheta1 and dL/db sums.
SALTATORY_HD void alif_entry(const Alif& m, int j, float gs, Rows g, Rows at, Rows sums) {
  const float term = adapted_entry(m.membrane, j, gs, g, at, sums);
  g[1][j] -= m.b[j] * term;
  if (sums) sums[4][j] -= term * at[1][j];
}

template <class Blk>
SALTATORY_HD void state_grad_row(Blk&& blk, const Alif& m, Rows g, Rows at, const int32_t* ids,
                                 const float* gs, int n_tot, int32_t j0 = 0,
                                 int32_t j1 = 0x7FFFFFFF, Rows sums = {}) {
  for_listed(blk, ids, gs, n_tot, j0, j1,
             [&](int j, float e) { alif_entry(m, j, e, g, at, sums); });
}

template <class Blk>
SALTATORY_HD void dense_state_grad_row(Blk&& blk, const Alif& m, Rows g, Rows at, const float* gs,
                                       int n, Rows sums = {}) {
  for_flagged(blk, m.membrane, at, gs, n,
              [&](int j, float e) { alif_entry(m, j, e, g, at, sums); });
}

/// gI = g (1 - alpha) gV (the adaptation takes nothing from gV).
template <class Blk>
SALTATORY_HD void current_grad_row(Blk&& blk, const Alif& m, float* gi, Rows g, int n) {
  current_grad_row(blk, m.membrane, gi, g, n);
}

/// The LIF's alpha terms on V = u + b a (zero resets), and ga (a[t-1] - S[t-1]) for rho.
template <class Blk>
SALTATORY_HD void parameter_grad_row(Blk&& blk, const Alif& m, Rows sums, Rows g, Rows prev,
                                     const float* emitted, Rows now, int n) {
  const Lif& lif = m.membrane;
  const float *gv = g[0], *ga = g[1], *u = now[0], *a = now[1];
  if (!prev) {  // V[-1] = 0: P = leak = 0; a[0] = 0
    for (int j = blk.rank(); j < n; j += blk.size()) sums[1][j] += gv[j] * (u[j] + m.b[j] * a[j]);
    return;
  }
  const float *u_prev = prev[0], *a_prev = prev[1];
  for_zero_reset(blk, lif, emitted, n, [&](int j, auto reset) {
    const float v = u[j] + m.b[j] * a[j];
    const float p = (u_prev[j] + m.b[j] * a_prev[j]) * (1.0f - reset(u_prev[j]));
    sums[0][j] += gv[j] * p;
    sums[1][j] += gv[j] * (v - lif.alpha[j] * p);
    sums[3][j] += ga[j] * (a_prev[j] - emitted[j]);
  });
}

/// dL/dalpha_j, dL/dtheta1_j, dL/drho_j and dL/db_j into grads {alpha, theta1, rho, b}.
SALTATORY_HD void add_parameter_grads(const Alif& m, int j, const float* sums, int n,
                                      Params<float> grads) {
  add_parameter_grads(m.membrane, j, sums, n, grads);
  if (grads[p_rho] != nullptr) grads[p_rho][j] += sums[3 * n + j];
  if (grads[p_b] != nullptr) grads[p_b][j] += sums[4 * n + j];
}

}  // namespace saltatory::kernels::neurons
