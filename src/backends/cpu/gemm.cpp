// gemm_add: packs op(A) and op(B) into the tile's layout and runs register tiles over C.
//   for each block of kKc steps of k (in k order: the fma chains continue across blocks):
//     pack op(B)[k0:k1, :] into panels of NR columns (zero-padded)
//     for each MR rows of C (in parallel, blocks of kTilesPerBlock tiles): pack op(A)[rows, k0:k1],
//       then each panel: C[rows, panel] = tile(A, B) (through a zero-padded copy at the edges)
#include "backends/cpu/gemm.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/parallel.hpp"

namespace saltatory::cpu {

namespace {

constexpr int kPortableRows = 4, kPortableCols = 16;
/// Steps of k per packed block: an MR x kKc block of A and a kKc x NR panel of B stay in L1/L2.
constexpr int64_t kKc = 256;
/// Register tiles of rows per block of parallel work.
constexpr int kTilesPerBlock = 8;

void portable(int64_t kc, const float* a, const float* b, float* c, int64_t ldc) {
  for (int64_t p = 0; p < kc; ++p, a += kPortableRows, b += kPortableCols)
    for (int r = 0; r < kPortableRows; ++r)
      for (int j = 0; j < kPortableCols; ++j) c[r * ldc + j] = std::fma(a[r], b[j], c[r * ldc + j]);
}

const gemm_tiles::Shape& fastest() {
  static const gemm_tiles::Shape s = gemm_shapes().front();
  return s;
}

/// Packs `kc` steps of `lanes` values into groups of `width` (zero-padded):
/// dst[p * width + j] = src[j * lane_stride + p * step_stride].
void pack(const float* src, int64_t lane_stride, int64_t step_stride, int lanes, int width,
          int64_t kc, float* dst) {
  for (int64_t p = 0; p < kc; ++p) std::fill(dst + p * width + lanes, dst + (p + 1) * width, 0.0f);
  if (lane_stride == 1) {  // each step's lanes are contiguous
    for (int64_t p = 0; p < kc; ++p) std::copy_n(src + p * step_stride, lanes, dst + p * width);
    return;
  }
  for (int j = 0; j < lanes; ++j)  // each lane's steps are strided by step_stride
    for (int64_t p = 0; p < kc; ++p) dst[p * width + j] = src[j * lane_stride + p * step_stride];
}

}  // namespace

std::vector<gemm_tiles::Shape> gemm_shapes() {
  std::vector<gemm_tiles::Shape> shapes;
#if defined(SALTATORY_GEMM_X86)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
    shapes.push_back({gemm_tiles::avx512, gemm_tiles::kAvx512Rows, gemm_tiles::kAvx512Cols});
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    shapes.push_back({gemm_tiles::avx2, gemm_tiles::kAvx2Rows, gemm_tiles::kAvx2Cols});
#endif
  shapes.push_back({portable, kPortableRows, kPortableCols});
  return shapes;
}

void gemm_add(const float* a, bool a_transposed, const float* b, bool b_transposed, float* c,
              int64_t m, int64_t k, int64_t n) {
  gemm_add(fastest(), a, a_transposed, b, b_transposed, c, m, k, n);
}

void gemm_add(const gemm_tiles::Shape& s, const float* a, bool a_transposed, const float* b,
              bool b_transposed, float* c, int64_t m, int64_t k, int64_t n) {
  if (m <= 0 || n <= 0 || k <= 0) return;
  // op(A)[i, p] = a[i * a_row + p * a_step], op(B)[p, j] = b[p * b_step + j * b_col]
  const int64_t a_row = a_transposed ? 1 : k, a_step = a_transposed ? m : 1;
  const int64_t b_col = b_transposed ? k : 1, b_step = b_transposed ? 1 : n;
  const int64_t panels = (n + s.nr - 1) / s.nr;
  std::vector<float> b_pack(static_cast<size_t>(panels) * s.nr * std::min(k, kKc));
  for (int64_t k0 = 0; k0 < k; k0 += kKc) {
    const int64_t kc = std::min(kKc, k - k0);
    for_each_block(panels, 1, [&](int64_t q, int64_t) {
      const int cols = static_cast<int>(std::min<int64_t>(s.nr, n - q * s.nr));
      pack(b + k0 * b_step + q * s.nr * b_col, b_col, b_step, cols, s.nr, kc,
           b_pack.data() + q * s.nr * kc);
    });
    // blocks of whole tiles (an entry's chain does not depend on where blocks start)
    for_each_block(m, s.mr * kTilesPerBlock, [&](int64_t r0, int64_t r1) {
      std::vector<float> a_pack(static_cast<size_t>(s.mr) * kc), edge(s.mr * s.nr);
      for (int64_t i0 = r0; i0 < r1; i0 += s.mr) {
        const int rows = static_cast<int>(std::min<int64_t>(s.mr, r1 - i0));
        pack(a + i0 * a_row + k0 * a_step, a_row, a_step, rows, s.mr, kc, a_pack.data());
        for (int64_t q = 0; q < panels; ++q) {
          const int64_t j0 = q * s.nr;
          const int cols = static_cast<int>(std::min<int64_t>(s.nr, n - j0));
          float* tile = c + i0 * n + j0;
          const float* panel = b_pack.data() + q * s.nr * kc;
          if (rows == s.mr && cols == s.nr) {
            s.tile(kc, a_pack.data(), panel, tile, n);
            continue;
          }
          std::fill(edge.begin(), edge.end(), 0.0f);  // the tile's part inside C, padded
          for (int r = 0; r < rows; ++r) std::copy_n(tile + r * n, cols, edge.begin() + r * s.nr);
          s.tile(kc, a_pack.data(), panel, edge.data(), s.nr);
          for (int r = 0; r < rows; ++r) std::copy_n(edge.begin() + r * s.nr, cols, tile + r * n);
        }
      }
    });
  }
}

}  // namespace saltatory::cpu
