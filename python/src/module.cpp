// The compiled core of the `saltatory` Python package: one init function per area.
#include "bindings.hpp"
#include "saltatory/backend/backend.hpp"
#include "saltatory/bench/probe.hpp"
#include "saltatory/core/device.hpp"
#include "saltatory/core/memory.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "Saltatory compiled core (use the saltatory package, not this module)";
  saltatory::python::init_spikes(m);
  saltatory::python::init_ops(m);
  saltatory::python::init_optim(m);
  saltatory::python::init_ipu(m);
  m.def("available_devices", &saltatory::available_devices);
  m.def(
      "require_device",
      [](const std::string& name) { saltatory::backend_for(saltatory::parse_device(name)); },
      py::arg("name"));
  m.def(
      "set_num_threads",
      [](const py::handle& n) {
        saltatory::set_num_threads(saltatory::python::integer<int>(n, "set_num_threads", "n", 0));
      },
      py::arg("n"));
  m.def("memory_limit", &saltatory::memory_limit);
  m.def(
      "set_memory_limit",
      [](const py::handle& bytes) {
        saltatory::set_memory_limit(
            saltatory::python::integer<int64_t>(bytes, "set_memory_limit", "bytes", 0));
      },
      py::arg("bytes"));
  m.def(
      "probe_gather_bandwidth",
      [](int rows, int cols, int k, double min_seconds) {
        py::gil_scoped_release release;
        return saltatory::probe_gather_bandwidth(rows, cols, k, min_seconds).rate;
      },
      py::arg("rows"), py::arg("cols"), py::arg("k"), py::arg("min_seconds") = 0.2,
      "Bytes/s of summing lists of k random rows of a [rows, cols] float32 matrix (all threads).");
  m.def(
      "probe_multiply_add",
      [](double min_seconds) {
        saltatory::ProbeResult result;
        {
          py::gil_scoped_release release;
          result = saltatory::probe_multiply_add(min_seconds);
        }
        return py::make_tuple(result.rate, result.fma);
      },
      py::arg("min_seconds") = 0.2,
      "(FLOP/s, used_fma) of independent multiply-add chains on all threads.");
  m.def("build_info", [] {
    const auto info = saltatory::build_info();
    py::dict d;
    d["version"] = info.version;
    d["compiler"] = info.compiler;
    d["cuda"] = info.cuda;
    d["poplar"] = info.poplar;
    d["cpu_threads"] = info.cpu_threads;
    return d;
  });
}
