// Machine probes for the benchmark's roofline: what this CPU can do at best, measured with code
// written independently of the library's kernels.
//   gather bandwidth = bytes of weight rows read / s, summing lists of k random rows of a
//                      [rows, cols] float matrix into one accumulator per list, in parallel
//   multiply-add throughput = FLOP/s (2 per a * b + c) of independent chains on every thread
#pragma once

#include <cstdint>

namespace saltatory {

/// One probe's result: the best rate over its trials.
struct ProbeResult {
  double rate;     ///< bytes/s (gather) or FLOP/s (multiply-add)
  double seconds;  ///< time of the best trial
  bool fma;        ///< multiply-add probe only: fused FMA instructions were used
};

/// Row-gather bandwidth on a [rows, cols] float matrix, lists of k ids; runs >= min_seconds.
ProbeResult probe_gather_bandwidth(int rows, int cols, int k, double min_seconds = 0.2);
/// Multiply-add throughput of all threads; uses FMA instructions where the CPU has them.
ProbeResult probe_multiply_add(double min_seconds = 0.2);

}  // namespace saltatory
