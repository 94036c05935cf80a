// libFuzzer target: SpikeTensor validation and conversion from raw buffers. Any list the
// validator accepts must convert to dense and back without a fault; rejected ones throw Error.
#include <cstdint>
#include <vector>

#include "fuzz_input.hpp"
#include "saltatory/core/error.hpp"
#include "saltatory/core/spikes.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace saltatory;
  fuzz::Input in(data, size);
  const int T = in.size(6), B = in.size(6), K = in.size(8), N = in.take<int16_t>();
  const auto ids = in.array<int32_t>(static_cast<size_t>(T) * B * K);
  const auto n_spk = in.array<int32_t>(static_cast<size_t>(T) * B);
  const auto n_tot = in.array<int32_t>(static_cast<size_t>(T) * B);
  const SpikeView view{ids.data(), n_spk.data(), n_tot.data(), T, B, K, N};
  try {
    validate(view, "fuzz");
    const SpikeTensor copy = SpikeTensor::from_view(view);
    const std::vector<float> dense = copy.to_dense();
    const SpikeTensor back = SpikeTensor::from_dense(dense.data(), T, B, N, K);
    if (back.total_spikes() != copy.total_spikes()) __builtin_trap();  // a round trip lost spikes
  } catch (const Error&) {
  }
  return 0;
}
