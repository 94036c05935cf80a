// The compiled core of the `saltatory` Python package: one init function per area.
#include "bindings.hpp"
#include "saltatory/core/device.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "Saltatory compiled core (use the saltatory package, not this module)";
  saltatory::python::init_spikes(m);
  saltatory::python::init_ops(m);
  saltatory::python::init_optim(m);
  m.def("available_devices", &saltatory::available_devices);
  m.def("set_num_threads", &saltatory::set_num_threads, py::arg("n"));
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
