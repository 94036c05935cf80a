// Rows of a neuron model's per-neuron arrays at one step and sample, as the backends store and
// carry them: a model's state variables (row 0 is the membrane that lists select from and the
// surrogate reads), the adjoints backward carries between steps, and the per-neuron sums behind
// its parameter gradients. A backend allocates, copies and slices them by count (the model's
// kStates, kAdjoints, kSums) without knowing what the rows mean.
#pragma once

#include "saltatory/kernels/common.hpp"

namespace saltatory::kernels::neurons {

/// The most rows of one set in any model (the LIF's parameter sums).
inline constexpr int kMaxRows = 3;

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

}  // namespace saltatory::kernels::neurons
