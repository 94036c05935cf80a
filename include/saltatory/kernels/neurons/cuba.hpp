// The current-based LIF (CUBA) neuron model: a LIF membrane (neurons/lif.hpp) driven by a
// synaptic current that decays with its own per-neuron factor. Per neuron j:
//   Isyn[t] = alpha_syn_j Isyn[t-1] + I[t]                     (Isyn[-1] = 0)
//   V[t]    = the LIF update with input current Isyn[t]        (every reset rule, both resets'
//             gradients, selection and surrogate as the LIF's)
//   gV[t]    = the LIF's:  m gV[t+1] + surrogate terms of the listed entries
//   gIsyn[t] = alpha_syn_j gIsyn[t+1] + g (1 - alpha_j) gV[t];   gI[t] = gIsyn[t]
//   dL/dalpha_j, dL/dtheta1_j: the LIF's, with Isyn in the place of I
//   dL/dalpha_syn_j = sum over t, b of gIsyn[t] Isyn[t-1]
// Per-neuron parameters {alpha, theta1, alpha_syn}; states {V, Isyn}; adjoints {gV, gIsyn}; sums
// the LIF's three and {gIsyn Isyn[t-1]}. The LIF part runs on the first rows of each set, so the
// two models share every line of the membrane's math.
#pragma once

#include "saltatory/kernels/neurons/lif.hpp"

namespace saltatory::kernels::neurons {

/// A CUBA layer (or a slice of one).
struct Cuba {
  static constexpr int kParams = 3;    ///< slots alpha, theta1, alpha_syn
  static constexpr int kStates = 2;    ///< V, Isyn
  static constexpr int kAdjoints = 2;  ///< gV, gIsyn
  static constexpr int kSums = 4;      ///< the LIF's three, gIsyn Isyn[t-1] (dL/dalpha_syn)

  Lif membrane;            ///< the membrane over {alpha, theta1}
  const float* alpha_syn;  ///< [n] synaptic decay

  SALTATORY_HD static bool uses(int slot) { return Lif::uses(slot) || slot == p_alpha_syn; }
  SALTATORY_HD static Cuba of(Params<const float> p, const Settings& s) {
    return {Lif::of(p, s), p[p_alpha_syn]};
  }
  SALTATORY_HD bool carry_reads_emitted() const { return membrane.carry_reads_emitted(); }
  SALTATORY_HD bool carry_reads_states() const { return membrane.carry_reads_states(); }
  SALTATORY_HD bool update_reads_emitted() const { return membrane.update_reads_emitted(); }
};

/// Isyn[t] = alpha_syn Isyn[t-1] + I[t], then the LIF update of V[t] from Isyn[t]. `current` may
/// be V[t] itself (row 0 of `now`), as for the LIF.
template <class Blk>
SALTATORY_HD void update_row(Blk&& blk, const Cuba& m, Rows now, Rows prev, const float* emitted,
                             const float* current, int n) {
  float* syn = now[1];
  for (int j = blk.rank(); j < n; j += blk.size())
    syn[j] = prev ? m.alpha_syn[j] * prev[1][j] + current[j] : current[j];
  update_row(blk, m.membrane, now, prev, emitted, syn, n);
}

/// The LIF's carry of gV, and gIsyn *= alpha_syn.
template <class Blk>
SALTATORY_HD void carry_row(Blk&& blk, const Cuba& m, Rows g, Rows at, const float* emitted,
                            int n) {
  carry_row(blk, m.membrane, g, at, emitted, n);
  float* gsyn = g[1];
  for (int j = blk.rank(); j < n; j += blk.size()) gsyn[j] *= m.alpha_syn[j];
}

/// The LIF's surrogate terms, into gV and the dL/dtheta1 sum.
template <class Blk>
SALTATORY_HD void state_grad_row(Blk&& blk, const Cuba& m, Rows g, Rows at, const int32_t* ids,
                                 const float* gs, int n_tot, int32_t j0 = 0,
                                 int32_t j1 = 0x7FFFFFFF, Rows sums = {}) {
  state_grad_row(blk, m.membrane, g, at, ids, gs, n_tot, j0, j1, sums);
}

template <class Blk>
SALTATORY_HD void dense_state_grad_row(Blk&& blk, const Cuba& m, Rows g, Rows at, const float* gs,
                                       int n, Rows sums = {}) {
  dense_state_grad_row(blk, m.membrane, g, at, gs, n, sums);
}

/// gIsyn[t] += g (1 - alpha) gV[t] (the membrane's dL/dIsyn), then gI = gIsyn.
template <class Blk>
SALTATORY_HD void current_grad_row(Blk&& blk, const Cuba& m, float* gi, Rows g, int n) {
  current_grad_row(blk, m.membrane, gi, g, n);
  float* gsyn = g[1];
  for (int j = blk.rank(); j < n; j += blk.size()) {
    gsyn[j] += gi[j];
    gi[j] = gsyn[j];
  }
}

/// The LIF's direct terms (its input current being Isyn) and gIsyn Isyn[t-1].
template <class Blk>
SALTATORY_HD void parameter_grad_row(Blk&& blk, const Cuba& m, Rows sums, Rows g, Rows prev,
                                     const float* emitted, Rows now, int n) {
  parameter_grad_row(blk, m.membrane, sums, g, prev, emitted, now, n);
  if (!prev) return;  // Isyn[-1] = 0
  const float* gsyn = g[1];
  const float* syn_prev = prev[1];
  float* d_syn = sums[3];
  for (int j = blk.rank(); j < n; j += blk.size()) d_syn[j] += gsyn[j] * syn_prev[j];
}

/// The LIF's dL/dalpha_j and dL/dtheta1_j, and dL/dalpha_syn_j, into grads {alpha, theta1,
/// alpha_syn} (each may be null).
SALTATORY_HD void add_parameter_grads(const Cuba& m, int j, const float* sums, int n,
                                      Params<float> grads) {
  add_parameter_grads(m.membrane, j, sums, n, grads);
  if (grads[p_alpha_syn] != nullptr) grads[p_alpha_syn][j] += sums[3 * n + j];
}

}  // namespace saltatory::kernels::neurons
