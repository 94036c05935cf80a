// The adaptive LIF with current adaptation (adLIF, Bittar & Garner 2022): an adaptation current w,
// driven by the membrane and by spikes, decays with its own per-neuron factor and is subtracted
// from the input. Per neuron j:
//   w[t] = rho_j w[t-1] + (1 - rho_j) (a_j V[t-1] + b_j S[t-1])       (w[-1] = 0; S emitted)
//   V[t] = alpha_j V[t-1] (1 - r[t]) + (1 - alpha_j) (g I[t] - w[t]),  r[t] = H(V[t-1] - theta1_j)
//          (reset = state) or j's spike of t-1 emitted (reset = spike)
//   spike V[t] > theta1_j;  gradient candidate theta2 < V[t] <= theta1_j  (the LIF's selection)
// Backward, gE[t] the gradient of an entry of S[t] and sigma' = sigma'(V[t] - theta1_j):
//   gV[t] = m gV[t+1] + (1 - rho_j) a_j gw[t+1] + sum over listed entries of
//           (gE[t] + (1 - rho_j) b_j gw[t+1]) sigma'          (m the LIF's carry)
//   gw[t] = rho_j gw[t+1] - (1 - alpha_j) gV[t];   gI[t] = g (1 - alpha_j) gV[t]
//   dL/dalpha_j: the LIF's (g I - w in the place of g I);  dL/dtheta1_j: the LIF's
//   dL/drho_j = sum over t, b of gw[t] (w[t-1] - a_j V[t-1] - b_j S[t-1])
//   dL/da_j = sum of gw[t] (1 - rho_j) V[t-1];   dL/db_j = sum of gw[t] (1 - rho_j) S[t-1]
// Per-neuron parameters alpha, theta1, rho, b, a (neurons/rows.hpp's slots); states {V, w};
// adjoints {gV, gw, f} with f = (1 - rho) b gw[t+1], the adaptation's share of step t's entry
// gradients, consumed by the first surrogate term of each neuron (as the ALIF's); sums the LIF's
// three, then the rho, b and a terms.
#pragma once

#include "saltatory/kernels/neurons/lif.hpp"

namespace saltatory::kernels::neurons {

/// An adLIF layer (or a slice of one). The subtract reset is not modelled (the op layer refuses
/// it).
struct Adlif {
  static constexpr int kParams = 6;    ///< slots alpha, theta1, (alpha_syn unused), rho, b, a
  static constexpr int kStates = 2;    ///< V, w
  static constexpr int kAdjoints = 3;  ///< gV, gw, the adaptation's share f of the entry gradients
  static constexpr int kSums = 6;      ///< the LIF's three, dL/drho, dL/db, dL/da

  Lif membrane;      ///< the LIF over {alpha, theta1}
  const float* rho;  ///< [n] adaptation decay
  const float* b;    ///< [n] spike-triggered adaptation
  const float* a;    ///< [n] subthreshold (membrane-driven) adaptation

  SALTATORY_HD static bool uses(int slot) {
    return Lif::uses(slot) || slot == p_rho || slot == p_b || slot == p_a;
  }
  SALTATORY_HD static Adlif of(Params<const float> p, const Settings& s) {
    return {Lif::of(p, s), p[p_rho], p[p_b], p[p_a]};
  }
  SALTATORY_HD bool carry_reads_emitted() const { return membrane.carry_reads_emitted(); }
  SALTATORY_HD bool carry_reads_states() const { return membrane.carry_reads_states(); }
  /// The adaptation reads which spikes were emitted.
  SALTATORY_HD bool update_reads_emitted() const { return true; }
};

/// w[t] from V[t-1] and the footprint of S[t-1], then V[t]: the LIF update less (1 - alpha) w.
template <class Blk>
SALTATORY_HD void update_row(Blk&& blk, const Adlif& m, Rows now, Rows prev, const float* emitted,
                             const float* current, int n) {
  const Lif& lif = m.membrane;
  float *v = now[0], *w = now[1];
  if (!prev) {  // w[0] = 0
    for (int j = blk.rank(); j < n; j += blk.size()) {
      v[j] = lif_step(0.0f, 0.0f, lif.alpha[j], lif.gain, current[j]);
      w[j] = 0.0f;
    }
    return;
  }
  const float *v_prev = prev[0], *w_prev = prev[1];
  for_zero_reset(blk, lif, emitted, n, [&](int j, auto reset) {
    const float adapt =
        m.rho[j] * w_prev[j] + (1.0f - m.rho[j]) * (m.a[j] * v_prev[j] + m.b[j] * emitted[j]);
    v[j] = lif_step(v_prev[j], reset(v_prev[j]), lif.alpha[j], lif.gain, current[j]) -
           (1.0f - lif.alpha[j]) * adapt;
    w[j] = adapt;
  });
}

/// The LIF's carry of gV plus the membrane's share (1 - rho) a gw[t+1]; f = (1 - rho) b gw[t+1];
/// then gw *= rho.
template <class Blk>
SALTATORY_HD void carry_row(Blk&& blk, const Adlif& m, Rows g, Rows at, const float* emitted,
                            int n) {
  carry_row(blk, m.membrane, g, at, emitted, n);
  float *gv = g[0], *gw = g[1], *f = g[2];
  SALTATORY_NO_ALIAS
  for (int j = blk.rank(); j < n; j += blk.size()) {
    const float share = (1.0f - m.rho[j]) * gw[j];
    gv[j] += share * m.a[j];
    f[j] = share * m.b[j];
    gw[j] *= m.rho[j];
  }
}

/// The surrogate terms (the LIF's, plus the adaptation's share) into gV and the dL/dtheta1 sum.
template <class Blk>
SALTATORY_HD void state_grad_row(Blk&& blk, const Adlif& m, Rows g, Rows at, const int32_t* ids,
                                 const float* gs, int n_tot, int32_t j0 = 0,
                                 int32_t j1 = 0x7FFFFFFF, Rows sums = {}) {
  for_listed(blk, ids, gs, n_tot, j0, j1,
             [&](int j, float e) { adapted_entry(m.membrane, j, e, g, at, sums); });
}

template <class Blk>
SALTATORY_HD void dense_state_grad_row(Blk&& blk, const Adlif& m, Rows g, Rows at, const float* gs,
                                       int n, Rows sums = {}) {
  for_flagged(blk, m.membrane, at, gs, n,
              [&](int j, float e) { adapted_entry(m.membrane, j, e, g, at, sums); });
}

/// gw[t] -= (1 - alpha) gV[t] (V[t] takes w[t] off its input), then gI = g (1 - alpha) gV.
template <class Blk>
SALTATORY_HD void current_grad_row(Blk&& blk, const Adlif& m, float* gi, Rows g, int n) {
  float *gv = g[0], *gw = g[1];
  for (int j = blk.rank(); j < n; j += blk.size()) gw[j] -= (1.0f - m.membrane.alpha[j]) * gv[j];
  current_grad_row(blk, m.membrane, gi, g, n);
}

/// The LIF's alpha terms (leak alpha P, P = V[t-1] (1 - r[t])), and the rho, b and a terms of gw.
template <class Blk>
SALTATORY_HD void parameter_grad_row(Blk&& blk, const Adlif& m, Rows sums, Rows g, Rows prev,
                                     const float* emitted, Rows now, int n) {
  const Lif& lif = m.membrane;
  const float *gv = g[0], *gw = g[1], *v = now[0];
  if (!prev) {  // V[-1] = 0, w[-1] = 0: P = leak = 0, w[0] = 0
    for (int j = blk.rank(); j < n; j += blk.size()) sums[1][j] += gv[j] * v[j];
    return;
  }
  const float *v_prev = prev[0], *w_prev = prev[1];
  for_zero_reset(blk, lif, emitted, n, [&](int j, auto reset) {
    const float e = emitted[j];
    const float p = v_prev[j] * (1.0f - reset(v_prev[j]));
    sums[0][j] += gv[j] * p;
    sums[1][j] += gv[j] * (v[j] - lif.alpha[j] * p);
    sums[3][j] += gw[j] * (w_prev[j] - (m.a[j] * v_prev[j] + m.b[j] * e));
    sums[4][j] += gw[j] * (1.0f - m.rho[j]) * e;
    sums[5][j] += gw[j] * (1.0f - m.rho[j]) * v_prev[j];
  });
}

/// dL/dalpha_j, dL/dtheta1_j, dL/drho_j, dL/db_j and dL/da_j into grads by slot.
SALTATORY_HD void add_parameter_grads(const Adlif& m, int j, const float* sums, int n,
                                      Params<float> grads) {
  add_parameter_grads(m.membrane, j, sums, n, grads);
  if (grads[p_rho] != nullptr) grads[p_rho][j] += sums[3 * n + j];
  if (grads[p_b] != nullptr) grads[p_b][j] += sums[4 * n + j];
  if (grads[p_a] != nullptr) grads[p_a][j] += sums[5 * n + j];
}

}  // namespace saltatory::kernels::neurons
