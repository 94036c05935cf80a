// Sparse gathers and scatters over input-major weights W [N_in, N_out] (row i = input neuron i).
//   forward gather:        I[:]     += sum_k W[ids_k, :]             k < n_spk
//   weight-grad scatter:   dW[i, :] += gI[:]                         (one row per input spike)
//   input-grad gather-dot: gS[k]     = W[ids_k, :] . gI[:]           k < n_tot
//   state-grad:            gV[ids_k] += gS[k] * sigma'(V[ids_k] - theta1)   k < n_tot
//   dot lanes:             the partial sums of one dot over a column slice (IPU tiles chain them)
//   sparse-to-dense:       D[ids_k] = 1 (k < n_spk);  its gradient gS[k] += gD[ids_k]
// Summation order is part of each kernel's contract (every backend calls these per column or per
// column block and gets bit-identical sums): the gather adds rows in groups of four,
// out += ((r0 + r1) + (r2 + r3)), then the remaining rows one by one; the dot keeps kDotLanes
// partial sums (lane = column mod kDotLanes) and reduces them pairwise.
#pragma once

#include <limits>

#include "saltatory/kernels/common.hpp"
#include "saltatory/kernels/surrogate.hpp"

#if defined(__SSE2__) && !defined(__CUDA_ARCH__)
#include <emmintrin.h>
#endif

namespace saltatory::kernels {

/// out[c] += sum_k W[ids_k, c], c in [0, n_cols); `row_stride` is N_out of W.
SALTATORY_HD void gather_rows(float* __restrict out, const float* __restrict w, int64_t row_stride,
                              const int32_t* ids, int n, int n_cols) {
  int k = 0;
  for (; k + 4 <= n; k += 4) {
    const float* __restrict r0 = w + static_cast<int64_t>(ids[k]) * row_stride;
    const float* __restrict r1 = w + static_cast<int64_t>(ids[k + 1]) * row_stride;
    const float* __restrict r2 = w + static_cast<int64_t>(ids[k + 2]) * row_stride;
    const float* __restrict r3 = w + static_cast<int64_t>(ids[k + 3]) * row_stride;
    for (int c = 0; c < n_cols; ++c) out[c] += (r0[c] + r1[c]) + (r2[c] + r3[c]);
  }
  if (k + 2 <= n) {
    const float* __restrict r0 = w + static_cast<int64_t>(ids[k]) * row_stride;
    const float* __restrict r1 = w + static_cast<int64_t>(ids[k + 1]) * row_stride;
    for (int c = 0; c < n_cols; ++c) out[c] += r0[c] + r1[c];
    k += 2;
  }
  if (k < n) {
    const float* __restrict row = w + static_cast<int64_t>(ids[k]) * row_stride;
    for (int c = 0; c < n_cols; ++c) out[c] += row[c];
  }
}

/// dst[c] += src[c], c in [0, n): one scattered weight-gradient row.
SALTATORY_HD void add_row(float* __restrict dst, const float* __restrict src, int n) {
  for (int c = 0; c < n; ++c) dst[c] += src[c];
}

/// Partial sums of a dot product: wide enough for 8-float vectors, independent lanes.
inline constexpr int kDotLanes = 8;

/// Lane partial sums of a dot product reduced pairwise: the one order every dot product uses.
SALTATORY_HD float reduce_lanes(const float* lane) {
  return ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
}

/// Dot product of one weight row with the current gradient (lane = column mod kDotLanes).
SALTATORY_HD float dot_row(const float* __restrict row, const float* __restrict g, int n) {
  float lane[kDotLanes] = {};
  int c = 0;
  for (; c + kDotLanes <= n; c += kDotLanes)
    for (int l = 0; l < kDotLanes; ++l) lane[l] += row[c + l] * g[c + l];
  for (int l = 0; c + l < n; ++l) lane[l] += row[c + l] * g[c + l];
  return reduce_lanes(lane);
}

/// gs[k] = W[ids_k, :] . g for k < n (`row_stride` is N_out of W, n_cols the dot length); each
/// equals dot_row bit for bit.
SALTATORY_HD void dot_rows(float* gs, const float* w, int64_t row_stride, const int32_t* ids, int n,
                           const float* __restrict g, int n_cols) {
  int k = 0;
#if defined(__SSE2__) && !defined(__CUDA_ARCH__)
  // Four rows per pass over g, each in two 4-lane registers (lanes 0-3 and 4-7): one load of g
  // serves four rows, which is what bounds a single-row dot.
  const int body = n_cols - n_cols % kDotLanes;
  for (; k + 4 <= n; k += 4) {
    const float* r[4];
    __m128 lo[4], hi[4];
    for (int i = 0; i < 4; ++i) {
      r[i] = w + static_cast<int64_t>(ids[k + i]) * row_stride;
      lo[i] = hi[i] = _mm_setzero_ps();
    }
    for (int c = 0; c < body; c += kDotLanes) {
      const __m128 g_lo = _mm_loadu_ps(g + c), g_hi = _mm_loadu_ps(g + c + 4);
      for (int i = 0; i < 4; ++i) {
        lo[i] = _mm_add_ps(lo[i], _mm_mul_ps(_mm_loadu_ps(r[i] + c), g_lo));
        hi[i] = _mm_add_ps(hi[i], _mm_mul_ps(_mm_loadu_ps(r[i] + c + 4), g_hi));
      }
    }
    for (int i = 0; i < 4; ++i) {
      float lane[kDotLanes];
      _mm_storeu_ps(lane, lo[i]);
      _mm_storeu_ps(lane + 4, hi[i]);
      for (int l = 0; body + l < n_cols; ++l) lane[l] += r[i][body + l] * g[body + l];
      gs[k + i] = reduce_lanes(lane);
    }
  }
#endif
  for (; k < n; ++k) gs[k] = dot_row(w + static_cast<int64_t>(ids[k]) * row_stride, g, n_cols);
}

/// gV[ids_k] += gS[k] * sigma'(V[ids_k] - theta1) for k < n_tot. With a slice [j0, j1) (an IPU
/// tile's neurons), gv and v hold only that slice and entries of other neurons are skipped.
SALTATORY_HD void accumulate_state_grad(float* gv, const float* v, const int32_t* ids,
                                        const float* gs, int n_tot, float theta1, Surrogate kind,
                                        float beta, int32_t j0 = 0, int32_t j1 = 0x7FFFFFFF) {
  for (int k = 0; k < n_tot; ++k) {
    const int32_t j = ids[k];
    if (j < j0 || j >= j1) continue;
    gv[j - j0] += gs[k] * surrogate_grad(kind, v[j - j0] - theta1, beta);
  }
}

/// Continues the lane partial sums of dot_row over columns [c0, c1) of a row (lane = column mod
/// kDotLanes): row slices taken in column order, then reduce_lanes, give dot_row bit for bit.
/// `row` and `g` point at column c0.
SALTATORY_HD void dot_row_lanes(float* lane, const float* __restrict row, const float* __restrict g,
                                int c0, int c1) {
  for (int c = c0; c < c1; ++c) lane[c % kDotLanes] += row[c - c0] * g[c - c0];
}

/// What a backward from the membranes kept at the list entries holds in V off the entries (a NaN,
/// so that a read there would show in the gradients).
inline constexpr float kNotListed = std::numeric_limits<float>::quiet_NaN();

/// dense[ids_k] = value for k < n: writes (value 1) or clears (value 0) a list's footprint.
SALTATORY_HD void scatter_value(float* dense, const int32_t* ids, int n, float value) {
  for (int k = 0; k < n; ++k) dense[ids[k]] = value;
}

/// values[k] = dense[ids_k] for k < n: a row's values at a list's entries.
SALTATORY_HD void gather_values(float* values, const float* dense, const int32_t* ids, int n) {
  for (int k = 0; k < n; ++k) values[k] = dense[ids[k]];
}

/// dense[ids_k] = values[k] for k < n: the inverse of gather_values on the list's neurons.
SALTATORY_HD void scatter_values(float* dense, const int32_t* ids, const float* values, int n) {
  for (int k = 0; k < n; ++k) dense[ids[k]] = values[k];
}

/// gs[k] += g_dense[ids_k] for k < n: the gradient of sparse-to-dense, accumulated.
SALTATORY_HD void add_gathered(float* gs, const float* g_dense, const int32_t* ids, int n) {
  for (int k = 0; k < n; ++k) gs[k] += g_dense[ids[k]];
}

}  // namespace saltatory::kernels
