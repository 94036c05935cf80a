// Bindings of SpikeTensor construction, conversion and validation. Python's SpikeTensor is a plain
// class over numpy arrays (ids int32 [T, B, K], n_spk / n_tot int32 [T, B]).
#include "bindings.hpp"
#include "options.hpp"
#include "saltatory/core/memory.hpp"

namespace saltatory::python {

namespace {

// The DLPack C ABI (dlpack.h, v0.8 and later; stable since): just what a consumer reads.
struct DLDevice {
  int32_t device_type;  // kDLCPU 1, kDLCUDA 2, kDLCUDAHost 3, kDLCUDAManaged 13
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;  // kDLInt 0
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null means C-contiguous
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor*);
};

/// The int32 array behind a DLPack producer, checked like `checked` checks numpy arrays;
/// `device_type` receives where its memory is.
const int32_t* dlpack_int32(const py::handle& obj, const char* op, const char* name,
                            std::vector<py::ssize_t> shape, std::vector<int64_t>& got,
                            int32_t& device_type, py::list* keep_alive) {
  const std::string what = std::string("[") + op + "] " + name;
  if (!py::hasattr(obj, "__dlpack__"))
    throw py::type_error(what + " must support DLPack (__dlpack__) for device cuda, got " +
                         std::string(py::str(obj.get_type().attr("__name__"))));
  // CUDA producers synchronise their stream with the consumer's: 1 is CUDA's legacy default
  // stream, which the backend uses.
  const py::object capsule = obj.attr("__dlpack__")(py::arg("stream") = 1);
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
  if (managed == nullptr) {
    PyErr_Clear();
    throw py::type_error(what + ": __dlpack__ did not return an unused DLPack capsule");
  }
  const DLTensor& t = managed->dl_tensor;
  if (t.dtype.code != 0 || t.dtype.bits != 32 || t.dtype.lanes != 1)
    throw py::type_error(what + " must have dtype int32, got DLPack type code " +
                         std::to_string(t.dtype.code) + " with " + std::to_string(t.dtype.bits) +
                         " bits");
  if (t.ndim != static_cast<int32_t>(shape.size()))
    throw py::value_error(what + " must have " + std::to_string(shape.size()) +
                          " dimensions, got " + std::to_string(t.ndim));
  got.assign(t.shape, t.shape + t.ndim);
  int64_t stride = 1;
  for (int d = t.ndim; d-- > 0;) {
    if (shape[d] >= 0 && got[d] != shape[d])
      throw py::value_error(what + " has size " + std::to_string(got[d]) + " in dimension " +
                            std::to_string(d) + ", expected " + std::to_string(shape[d]));
    if (t.strides != nullptr && got[d] > 1 && t.strides[d] != stride)
      throw py::value_error(what + " must be C-contiguous");
    stride *= got[d];
  }
  device_type = t.device.device_type;
  if (keep_alive != nullptr) keep_alive->append(capsule);
  return reinterpret_cast<const int32_t*>(static_cast<const char*>(t.data) + t.byte_offset);
}

}  // namespace

SpikeView spike_view(const py::handle& spikes, const char* op, py::list* keep_alive) {
  if (py::hasattr(spikes, "device") &&
      py::str(spikes.attr("device")).cast<std::string>() == "cuda") {
    std::vector<int64_t> shape;
    int32_t device[3];
    SpikeView v;
    v.ids = dlpack_int32(spikes.attr("ids"), op, "ids", {-1, -1, -1}, shape, device[0], keep_alive);
    v.T = extent(shape[0], op, "ids (T)");
    v.B = extent(shape[1], op, "ids (B)");
    v.K = extent(shape[2], op, "ids (K)");
    v.n_spk =
        dlpack_int32(spikes.attr("n_spk"), op, "n_spk", {v.T, v.B}, shape, device[1], keep_alive);
    v.n_tot =
        dlpack_int32(spikes.attr("n_tot"), op, "n_tot", {v.T, v.B}, shape, device[2], keep_alive);
    const char* names[3] = {"ids", "n_spk", "n_tot"};
    for (int i = 0; i < 3; ++i)
      if (device[i] != 2 && device[i] != 13)  // kDLCUDA, kDLCUDAManaged
        throw py::value_error(std::string("[") + op + "] " + names[i] +
                              " is on DLPack device type " + std::to_string(device[i]) +
                              ", expected CUDA (2) or CUDA managed (13) memory");
    v.N = integer<int>(spikes.attr("n_neurons"), op, "n_neurons", 1);
    v.on_device = true;
    return v;
  }
  const py::array ids = checked<int32_t>(spikes.attr("ids"), op, "ids", {-1, -1, -1});
  const py::ssize_t T = ids.shape(0), B = ids.shape(1);
  const py::array n_spk = checked<int32_t>(spikes.attr("n_spk"), op, "n_spk", {T, B});
  const py::array n_tot = checked<int32_t>(spikes.attr("n_tot"), op, "n_tot", {T, B});
  return SpikeView{static_cast<const int32_t*>(ids.data()),
                   static_cast<const int32_t*>(n_spk.data()),
                   static_cast<const int32_t*>(n_tot.data()),
                   extent(T, op, "ids (T)"),
                   extent(B, op, "ids (B)"),
                   extent(ids.shape(2), op, "ids (K)"),
                   integer<int>(spikes.attr("n_neurons"), op, "n_neurons", 1)};
}

namespace {

OverflowPolicy parse_policy(const std::string& name) {
  return parse(name, "SpikeTensor", "overflow policy", kOverflows);
}

py::tuple to_arrays(SpikeTensor&& s) {
  const py::ssize_t T = s.T(), B = s.B(), K = s.K();
  return py::make_tuple(owned(std::move(s.ids()), {T, B, K}), owned(std::move(s.n_spk()), {T, B}),
                        owned(std::move(s.n_tot()), {T, B}), s.dropped());
}

}  // namespace

void init_spikes(py::module_& m) {
  m.def(
      "spikes_from_dense",
      [](const py::handle& dense, const py::handle& capacity, const std::string& policy,
         const py::handle& seed, const py::handle& first_step) {
        const char* op = "SpikeTensor.from_dense";
        const py::array a = checked<float>(dense, op, "dense", {-1, -1, -1});
        const auto* data = static_cast<const float*>(a.data());
        const int T = extent(a.shape(0), op, "dense (T)"), B = extent(a.shape(1), op, "dense (B)"),
                  N = extent(a.shape(2), op, "dense (N)");
        const int K = integer<int>(capacity, op, "capacity", 1);
        const auto stream = integer<uint64_t>(seed, op, "seed");
        const auto step = integer<int64_t>(first_step, op, "first_step", 0, int64_t{1} << 62);
        const OverflowPolicy p = parse_policy(policy);
        SpikeTensor s;
        {
          py::gil_scoped_release release;
          s = SpikeTensor::from_dense(data, T, B, N, K, p, stream, step);
        }
        return to_arrays(std::move(s));
      },
      py::arg("dense"), py::arg("capacity"), py::arg("overflow"), py::arg("seed"),
      py::arg("first_step") = 0);
  m.def(
      "spikes_from_events",
      [](const py::handle& samples, const py::handle& times, const py::handle& units,
         double bin_width, const py::handle& n_steps, const py::handle& batch_size,
         const py::handle& n_neurons, const py::handle& capacity, const std::string& policy,
         const py::handle& seed) {
        const char* op = "SpikeTensor.from_events";
        const py::array s = checked<int64_t>(samples, op, "samples", {-1});
        const py::array tm = checked<double>(times, op, "times", {s.shape(0)});
        const py::array u = checked<int64_t>(units, op, "units", {s.shape(0)});
        const int T = integer<int>(n_steps, op, "n_steps", 1);
        const int B = integer<int>(batch_size, op, "batch_size", 1);
        const int N = integer<int>(n_neurons, op, "n_neurons", 1);
        const int K = integer<int>(capacity, op, "capacity", 1);
        const auto stream = integer<uint64_t>(seed, op, "seed");
        const OverflowPolicy p = parse_policy(policy);
        SpikeTensor out;
        {
          py::gil_scoped_release release;
          out = SpikeTensor::from_events(
              static_cast<const int64_t*>(s.data()), static_cast<const double*>(tm.data()),
              static_cast<const int64_t*>(u.data()), s.shape(0), bin_width, T, B, N, K, p, stream);
        }
        return to_arrays(std::move(out));
      },
      py::arg("samples"), py::arg("times"), py::arg("units"), py::arg("bin_width"),
      py::arg("n_steps"), py::arg("batch_size"), py::arg("n_neurons"), py::arg("capacity"),
      py::arg("overflow"), py::arg("seed"));
  m.def("spikes_to_dense", [](const py::handle& spikes) {
    const char* op = "SpikeTensor.to_dense";
    const SpikeView v = spike_view(spikes, op);
    validate(v, op);
    check_memory(4.0 * v.T * v.B * v.N, op, "a dense [T, B, N] array");
    std::vector<float> dense(static_cast<size_t>(v.T) * v.B * v.N);
    to_dense(v, dense.data());
    return owned(std::move(dense), {v.T, v.B, v.N});
  });
  m.def("validate_spikes", [](const py::handle& spikes, const std::string& op) {
    validate(spike_view(spikes, op.c_str()), op.c_str());
  });
}

}  // namespace saltatory::python
