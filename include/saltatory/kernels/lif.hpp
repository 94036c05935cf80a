// LIF membrane update and its adjoint, per neuron j (scalar math, [T, B, N] layouts live in callers;
// the model as a unit is kernels/neurons/lif.hpp).
//
//   V[t] = alpha * V[t-1] * (1 - r[t]) + g * (1 - alpha) * I[t]     (subtract: alpha V - theta1 r)
//   r[t] = H(V[t-1] - theta1)          (reset_mode = state: decided by the previous membrane)
//        = S[t-1] emitted              (reset_mode = spike: only spikes that made it into the list)
//
// Adjoint (time reversed), with gV the gradient carried from step t+1:
//   gV[t] = alpha * m[t+1] * gV[t+1] + sum over listed entries of gS * sigma'(V[t] - theta1)
//   m = 1 (reset_grad = pass)  or  m = 1 - r[t+1] (reset_grad = mask)
//   gI[t] = g * (1 - alpha) * gV[t]
// A readout layer is the same update with r = 0 and no selection.
#pragma once

#include "saltatory/kernels/common.hpp"

namespace saltatory::kernels {

/// The reset at step t: to zero, decided by the previous membrane (state) or by the emitted
/// spikes (spike); or subtracting theta1, decided by the previous membrane (subtract, snnTorch's
/// default): V[t] = alpha V[t-1] - theta1 r[t] + g (1 - alpha) I[t], r detached from the gradient.
enum class ResetMode : int { state = 0, spike = 1, subtract = 2 };
/// Which derivative the reset contributes to BPTT (docs/method.md, section 5).
enum class ResetGrad : int { pass = 0, mask = 1 };

/// One membrane step: `alpha * v_prev * (1 - reset) + gain * (1 - alpha) * current`.
SALTATORY_HD float lif_step(float v_prev, float reset, float alpha, float gain, float current) {
  return alpha * v_prev * (1.0f - reset) + gain * (1.0f - alpha) * current;
}

/// One membrane step with the subtract reset: `alpha * v_prev - theta1 * reset + gain * (1 -
/// alpha) * current`.
SALTATORY_HD float subtract_step(float v_prev, float reset, float alpha, float theta1, float gain,
                                 float current) {
  return alpha * v_prev - theta1 * reset + gain * (1.0f - alpha) * current;
}

/// Reset flag from the previous membrane (state-based reset): 1 if `v_prev > theta1`.
SALTATORY_HD float state_reset(float v_prev, float theta1) { return v_prev > theta1 ? 1.0f : 0.0f; }

/// Factor applied to the carried membrane gradient: `alpha` (pass) or `alpha * (1 - reset)` (mask).
SALTATORY_HD float carry_factor(float alpha, float reset_next, ResetGrad mode) {
  return mode == ResetGrad::mask ? alpha * (1.0f - reset_next) : alpha;
}

/// Gradient with respect to the input current from the membrane gradient.
SALTATORY_HD float current_grad(float gv, float alpha, float gain) {
  return gain * (1.0f - alpha) * gv;
}

}  // namespace saltatory::kernels
