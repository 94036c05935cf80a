// gemm_add's register tiles, one per instruction set. The AVX-512 and AVX2 ones are compiled for
// their instruction set in files of their own (gemm_avx512.cpp, gemm_avx2.cpp) that include this
// header and intrinsics only, so that no inline function compiled there stands in for another
// file's copy on a CPU without that instruction set; gemm.cpp calls one only where the CPU has it.
#pragma once

#include <cstdint>

namespace saltatory::cpu {

namespace gemm_tiles {

/// One register tile: C[MR, NR] (row stride ldc) = the fma chain over kc packed steps, where
/// a holds kc groups of MR values of A's column and b kc groups of NR values of B's row.
using Tile = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc);

struct Shape {
  Tile tile;
  int mr, nr;
};

void avx512(int64_t kc, const float* a, const float* b, float* c, int64_t ldc);
void avx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc);
inline constexpr int kAvx512Rows = 12, kAvx512Cols = 32, kAvx2Rows = 6, kAvx2Cols = 16;

}  // namespace gemm_tiles

}  // namespace saltatory::cpu
