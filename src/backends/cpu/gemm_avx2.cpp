// gemm_add's AVX2 register tile (compiled with -mavx2 -mfma): C[6, 16] = fma chain over k, 12
// accumulators, one broadcast of A per row and two vectors of B per step.
#include <immintrin.h>

#include "backends/cpu/gemm_tiles.hpp"

namespace saltatory::cpu::gemm_tiles {

void avx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc) {
  constexpr int MR = kAvx2Rows;
  __m256 lo[MR], hi[MR];
  for (int r = 0; r < MR; ++r) {
    lo[r] = _mm256_loadu_ps(c + r * ldc);
    hi[r] = _mm256_loadu_ps(c + r * ldc + 8);
  }
  for (int64_t p = 0; p < kc; ++p, a += MR, b += kAvx2Cols) {
    const __m256 b_lo = _mm256_loadu_ps(b), b_hi = _mm256_loadu_ps(b + 8);
    for (int r = 0; r < MR; ++r) {
      const __m256 x = _mm256_broadcast_ss(a + r);
      lo[r] = _mm256_fmadd_ps(x, b_lo, lo[r]);
      hi[r] = _mm256_fmadd_ps(x, b_hi, hi[r]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_ps(c + r * ldc, lo[r]);
    _mm256_storeu_ps(c + r * ldc + 8, hi[r]);
  }
}

}  // namespace saltatory::cpu::gemm_tiles
