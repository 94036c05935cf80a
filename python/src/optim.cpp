// Bindings of the C++ optimisers; parameters and gradients are numpy float32 arrays updated in place.
#include "saltatory/ops/optim.hpp"

#include <pybind11/stl.h>

#include <algorithm>

#include "bindings.hpp"

namespace saltatory::python {

void init_optim(py::module_& m) {
  py::class_<Optimizer>(m, "Optimizer")
      .def_readwrite("lr", &Optimizer::lr)
      .def_property_readonly("steps", &Optimizer::steps)
      .def_property_readonly(
          "state",
          [](const Optimizer& self) {  // copies, for checkpoints
            py::list out;
            for (const auto& v : self.state()) {
              py::array_t<float> copy(std::vector<py::ssize_t>{static_cast<py::ssize_t>(v.size())});
              std::copy(v.begin(), v.end(), copy.mutable_data());
              out.append(copy);
            }
            return out;
          })
      .def("load_state",
           [](Optimizer& self, int64_t steps, const py::list& arrays) {
             std::vector<std::vector<float>> state;
             for (const py::handle& item : arrays) {
               const py::array a =
                   checked<float>(item, "Optimizer.load_state", "state vector", {-1});
               const auto* data = static_cast<const float*>(a.data());
               state.emplace_back(data, data + a.size());
             }
             self.load_state(steps, std::move(state));
           })
      .def("step", [](Optimizer& self, const py::list& pairs) {  // [(value, grad), ...]
        const char* op = "Optimizer.step";
        std::vector<ParamRef> refs;
        for (const py::handle& item : pairs) {
          const auto pair = item.cast<py::tuple>();
          if (!py::isinstance<py::array>(pair[0]))
            throw py::type_error("[Optimizer.step] parameters must be numpy arrays");
          const auto ndim = pair[0].cast<py::array>().ndim();
          py::array value =
              checked<float>(pair[0], op, "parameter", std::vector<py::ssize_t>(ndim, -1), true);
          const py::array grad =
              checked<float>(pair[1], op, "gradient",
                             std::vector<py::ssize_t>(value.shape(), value.shape() + ndim));
          refs.push_back({static_cast<float*>(value.mutable_data()),
                          static_cast<const float*>(grad.data()),
                          static_cast<int64_t>(value.size())});
        }
        py::gil_scoped_release release;
        self.step(refs);
      });
  py::class_<Sgd, Optimizer>(m, "Sgd").def(py::init<float, float, float>(), py::arg("lr"),
                                           py::arg("momentum") = 0.0f,
                                           py::arg("weight_decay") = 0.0f);
  py::class_<Adam, Optimizer>(m, "Adam").def(
      py::init<float, float, float, float, float, bool>(), py::arg("lr") = 1e-3f,
      py::arg("beta1") = 0.9f, py::arg("beta2") = 0.999f, py::arg("eps") = 1e-8f,
      py::arg("weight_decay") = 0.0f, py::arg("decoupled_weight_decay") = false);
}

}  // namespace saltatory::python
