// libFuzzer target: event binning with arbitrary samples, times (NaN, Inf, negative, huge),
// units, bin widths, sizes and overflow policies. Every event is either binned, dropped and
// counted, or the call throws Error.
#include <cstdint>
#include <vector>

#include "fuzz_input.hpp"
#include "saltatory/core/error.hpp"
#include "saltatory/core/spikes.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace saltatory;
  fuzz::Input in(data, size);
  const int T = in.size(8) - 1, B = in.size(4), N = in.take<int8_t>(), K = in.size(6);
  const double bin_width = in.take<double>();
  const auto policy = in.take<uint8_t>() % 2 ? OverflowPolicy::random : OverflowPolicy::lowest_ids;
  const int64_t n_events = in.size(64);
  std::vector<int64_t> sample(n_events), unit(n_events);
  std::vector<double> time(n_events);
  for (int64_t e = 0; e < n_events; ++e) {
    sample[e] = in.take<int8_t>();
    unit[e] = in.take<int16_t>();
    time[e] = in.take<double>();
  }
  try {
    const SpikeTensor s =
        SpikeTensor::from_events(sample.data(), time.data(), unit.data(), n_events, bin_width, T, B,
                                 N, K, policy, in.take<uint64_t>());
    validate(s.view(), "fuzz");
    if (s.total_spikes() + s.dropped() > n_events) __builtin_trap();  // spikes from nowhere
  } catch (const Error&) {
  }
  return 0;
}
