// Freestanding helpers shared by every backend's kernels: no STL containers, no exceptions,
// no Eigen/TBB. SALTATORY_HD marks functions callable from host and CUDA device code.
#pragma once

#if defined(__CUDACC__)
#define SALTATORY_HD __host__ __device__ __forceinline__
#else
#define SALTATORY_HD inline
#endif

#include <cstdint>
