// Freestanding helpers shared by every backend's kernels: no STL containers, no exceptions,
// no Eigen/TBB. SALTATORY_HD marks functions callable from host and CUDA device code.
#pragma once

#if defined(__CUDACC__)
#define SALTATORY_HD __host__ __device__ __forceinline__
#else
#define SALTATORY_HD inline
#endif

// Before a host loop whose arrays do not overlap, except where iteration j reads and then writes
// element j of the same array (an update in place): GCC then vectorises it without runtime alias
// checks (it does not version a loop whose select reads several arrays).
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDA_ARCH__)
#define SALTATORY_NO_ALIAS _Pragma("GCC ivdep")
#else
#define SALTATORY_NO_ALIAS
#endif

#include <cstdint>
