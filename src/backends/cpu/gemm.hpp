// The dense mode's GEMM: C[m, n] += op(A) op(B), op(A) [m, k], op(B) [k, n], row-major.
//   C[i, j] <- fma(A[i, k-1], B[k-1, j], ... fma(A[i, 1], B[1, j], fma(A[i, 0], B[0, j], C[i, j])))
// Every entry is one chain of fused multiply-adds in k order, so its bits depend on neither the
// blocking, the thread count, the shape of the call nor the instruction set: the AVX-512 and AVX2
// tiles and the portable std::fma tile give the same result. With 0/1 spikes as A the products
// are exact, so a row is the bias plus the selected weight rows added one after another (the
// sparse path's gather pairs its rows, so the two agree to rounding).
#pragma once

#include <cstdint>
#include <vector>

#include "backends/cpu/gemm_tiles.hpp"

namespace saltatory::cpu {

/// C += op(A) op(B). `a_transposed`: A is stored [k, m]; `b_transposed`: B is stored [n, k].
void gemm_add(const float* a, bool a_transposed, const float* b, bool b_transposed, float* c,
              int64_t m, int64_t k, int64_t n);

/// The tile shapes this CPU runs, its fastest first and the portable one last.
std::vector<gemm_tiles::Shape> gemm_shapes();

/// gemm_add through a given tile shape (every shape gives the same bits; the tests check it).
void gemm_add(const gemm_tiles::Shape& shape, const float* a, bool a_transposed, const float* b,
              bool b_transposed, float* c, int64_t m, int64_t k, int64_t n);

}  // namespace saltatory::cpu
