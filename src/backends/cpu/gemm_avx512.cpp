// gemm_add's AVX-512 register tile (compiled with -mavx512f -mfma): C[12, 32] = fma chain over k,
// 24 accumulators, one broadcast of A per row and two vectors of B per step.
#include <immintrin.h>

#include "backends/cpu/gemm_tiles.hpp"

namespace saltatory::cpu::gemm_tiles {

void avx512(int64_t kc, const float* a, const float* b, float* c, int64_t ldc) {
  constexpr int MR = kAvx512Rows;
  __m512 lo[MR], hi[MR];
  for (int r = 0; r < MR; ++r) {
    lo[r] = _mm512_loadu_ps(c + r * ldc);
    hi[r] = _mm512_loadu_ps(c + r * ldc + 16);
  }
  for (int64_t p = 0; p < kc; ++p, a += MR, b += kAvx512Cols) {
    const __m512 b_lo = _mm512_loadu_ps(b), b_hi = _mm512_loadu_ps(b + 16);
    for (int r = 0; r < MR; ++r) {
      const __m512 x = _mm512_set1_ps(a[r]);
      lo[r] = _mm512_fmadd_ps(x, b_lo, lo[r]);
      hi[r] = _mm512_fmadd_ps(x, b_hi, hi[r]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_ps(c + r * ldc, lo[r]);
    _mm512_storeu_ps(c + r * ldc + 16, hi[r]);
  }
}

}  // namespace saltatory::cpu::gemm_tiles
