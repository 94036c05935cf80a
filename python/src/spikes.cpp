// Bindings of SpikeTensor construction, conversion and validation. Python's SpikeTensor is a plain
// class over numpy arrays (ids int32 [T, B, K], n_spk / n_tot int32 [T, B]).
#include "bindings.hpp"

namespace saltatory::python {

SpikeView spike_view(const py::handle& spikes, const char* op) {
  const py::array ids = checked<int32_t>(spikes.attr("ids"), op, "ids", {-1, -1, -1});
  const py::ssize_t T = ids.shape(0), B = ids.shape(1);
  const py::array n_spk = checked<int32_t>(spikes.attr("n_spk"), op, "n_spk", {T, B});
  const py::array n_tot = checked<int32_t>(spikes.attr("n_tot"), op, "n_tot", {T, B});
  return SpikeView{static_cast<const int32_t*>(ids.data()),
                   static_cast<const int32_t*>(n_spk.data()),
                   static_cast<const int32_t*>(n_tot.data()),
                   static_cast<int>(T),
                   static_cast<int>(B),
                   static_cast<int>(ids.shape(2)),
                   spikes.attr("n_neurons").cast<int>()};
}

namespace {

OverflowPolicy parse_policy(const std::string& name) {
  if (name == "lowest") return OverflowPolicy::lowest_ids;
  if (name == "random") return OverflowPolicy::random;
  throw py::value_error("[SpikeTensor] overflow policy must be 'lowest' or 'random', got '" + name +
                        "'");
}

py::tuple to_arrays(SpikeTensor&& s) {
  const py::ssize_t T = s.T(), B = s.B(), K = s.K();
  return py::make_tuple(owned(std::move(s.ids()), {T, B, K}), owned(std::move(s.n_spk()), {T, B}),
                        owned(std::move(s.n_tot()), {T, B}), s.dropped());
}

}  // namespace

void init_spikes(py::module_& m) {
  m.def("spikes_from_dense",
        [](const py::handle& dense, int capacity, const std::string& policy, uint64_t seed) {
          const char* op = "SpikeTensor.from_dense";
          const py::array a = checked<float>(dense, op, "dense", {-1, -1, -1});
          const auto* data = static_cast<const float*>(a.data());
          const int T = static_cast<int>(a.shape(0)), B = static_cast<int>(a.shape(1)),
                    N = static_cast<int>(a.shape(2));
          const OverflowPolicy p = parse_policy(policy);
          SpikeTensor s;
          {
            py::gil_scoped_release release;
            s = SpikeTensor::from_dense(data, T, B, N, capacity, p, seed);
          }
          return to_arrays(std::move(s));
        });
  m.def("spikes_from_events", [](const py::handle& sample, const py::handle& time,
                                 const py::handle& unit, double bin_width, int T, int B, int N,
                                 int capacity, const std::string& policy, uint64_t seed) {
    const char* op = "SpikeTensor.from_events";
    const py::array s = checked<int64_t>(sample, op, "sample", {-1});
    const py::array tm = checked<double>(time, op, "times", {s.shape(0)});
    const py::array u = checked<int64_t>(unit, op, "units", {s.shape(0)});
    const OverflowPolicy p = parse_policy(policy);
    SpikeTensor out;
    {
      py::gil_scoped_release release;
      out = SpikeTensor::from_events(
          static_cast<const int64_t*>(s.data()), static_cast<const double*>(tm.data()),
          static_cast<const int64_t*>(u.data()), s.shape(0), bin_width, T, B, N, capacity, p, seed);
    }
    return to_arrays(std::move(out));
  });
  m.def("spikes_to_dense", [](const py::handle& spikes) {
    const SpikeView v = spike_view(spikes, "SpikeTensor.to_dense");
    validate(v, "SpikeTensor.to_dense");
    std::vector<float> dense(static_cast<size_t>(v.T) * v.B * v.N);
    to_dense(v, dense.data());
    return owned(std::move(dense), {v.T, v.B, v.N});
  });
  m.def("validate_spikes", [](const py::handle& spikes, const std::string& op) {
    validate(spike_view(spikes, op.c_str()), op.c_str());
  });
}

}  // namespace saltatory::python
