// What every neuron model shares with the backends, which handle it by count without knowing
// what it means:
// - rows of the model's per-neuron arrays at one step and sample: its state variables (row 0 is
//   the membrane that lists select from and the surrogate reads), the adjoints backward carries
//   between steps, and the per-neuron sums behind its parameter gradients (the model's kStates,
//   kAdjoints, kSums);
// - its per-neuron parameters, in slots shared by every model (ParamSlot; a model reads the slots
//   below its kParams that it uses): alpha and theta1 first, since every model has a decay and
//   selection reads theta1;
// - its layer-wide settings.
#pragma once

#include "saltatory/kernels/common.hpp"
#include "saltatory/kernels/lif.hpp"
#include "saltatory/kernels/surrogate.hpp"

namespace saltatory::kernels {

/// A block of one thread: how the host backends run the block row functions.
struct SerialBlock {
  SALTATORY_HD int rank() const { return 0; }
  SALTATORY_HD int size() const { return 1; }
  SALTATORY_HD void sync() const {}
  /// Exclusive prefix sum over the block's threads (of one thread: 0) and their total.
  SALTATORY_HD int exclusive_sum(int x, int& total) const {
    total = x;
    return 0;
  }
};

namespace neurons {

/// Flags of a neuron's membrane against its thresholds.
enum Flag : int { none = 0, spike = 1, candidate = 2 };

/// Which list membrane v belongs to: spike v > theta1, candidate theta2 < v <= theta1 (every
/// model selects so from its membrane).
SALTATORY_HD Flag flag_of(float v, float theta1, float theta2) {
  if (v > theta1) return spike;
  return v > theta2 ? candidate : none;
}

/// The most rows of one set in any model (the adLIF's parameter sums).
inline constexpr int kMaxRows = 6;

/// The slots of the models' per-neuron parameters.
enum ParamSlot : int {
  p_alpha = 0,      ///< membrane decay (every model)
  p_theta1 = 1,     ///< spike threshold (spiking layers)
  p_alpha_syn = 2,  ///< synaptic decay (CUBA)
  p_rho = 3,        ///< adaptation decay (ALIF, adLIF)
  p_b = 4,          ///< adaptation strength: per spike (ALIF: of the threshold; adLIF: of w)
  p_a = 5,          ///< subthreshold adaptation (adLIF)
  kMaxParams = 6
};

/// Up to kMaxRows rows of n floats. A null first row means none (no previous step, no sums kept).
struct Rows {
  float* row[kMaxRows] = {};

  /// `count` rows at base, base + stride, base + 2 stride, ...
  SALTATORY_HD static Rows strided(float* base, int64_t stride, int count) {
    Rows r;
    for (int i = 0; i < count && base != nullptr; ++i) r.row[i] = base + i * stride;
    return r;
  }
  SALTATORY_HD float* operator[](int i) const { return row[i]; }
  SALTATORY_HD explicit operator bool() const { return row[0] != nullptr; }
};

/// A model's per-neuron parameter arrays (or their gradients), by slot; null where
/// a layer has none (theta1 of a readout) or a gradient is not wanted.
template <class F>
struct Params {
  F* param[kMaxParams] = {};
  SALTATORY_HD F* operator[](int i) const { return param[i]; }
  /// Whether any is set.
  SALTATORY_HD bool any() const {
    for (F* p : param)
      if (p != nullptr) return true;
    return false;
  }
};

/// The layer-wide settings of a neuron model (each model reads what it uses).
struct Settings {
  float theta2;  ///< gradient-candidate threshold (layer-wide, <= theta1_j)
  float gain;    ///< input gain g
  float beta;    ///< surrogate slope
  Surrogate surrogate;
  ResetMode reset;
  ResetGrad reset_grad;
  bool readout;  ///< a leaky integrator: no reset, no thresholds
};

}  // namespace neurons
}  // namespace saltatory::kernels
