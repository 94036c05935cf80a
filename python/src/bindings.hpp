// Shared array conversions of the Python bindings: checked, zero-copy views of numpy arrays, and
// numpy arrays that own (or borrow from a keep-alive owner) C++ buffers.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <limits>
#include <string>
#include <vector>

#include "saltatory/core/spikes.hpp"

namespace saltatory::python {

namespace py = pybind11;

/// Checks dtype (TypeError), C-contiguity, ndim and the sizes that are given (ValueError;
/// -1 accepts any size). Returns the array unchanged: the caller reads its memory in place.
template <class T>
py::array checked(const py::handle& obj, const char* op, const char* name,
                  std::vector<py::ssize_t> shape, bool writable = false) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string("[") + op + "] " + name + " must be a numpy array, got " +
                         std::string(py::str(obj.get_type().attr("__name__"))));
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!arr.dtype().equal(py::dtype::of<T>()))  // equivalent (an unpickled dtype is another object)
    throw py::type_error(std::string("[") + op + "] " + name + " must have dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(arr.dtype())));
  if (!(arr.flags() & py::array::c_style))
    throw py::value_error(std::string("[") + op + "] " + name + " must be C-contiguous");
  if (writable && !arr.writeable())
    throw py::value_error(std::string("[") + op + "] " + name + " must be writable");
  if (arr.ndim() != static_cast<py::ssize_t>(shape.size()))
    throw py::value_error(std::string("[") + op + "] " + name + " must have " +
                          std::to_string(shape.size()) + " dimensions, got " +
                          std::to_string(arr.ndim()));
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] >= 0 && arr.shape(i) != shape[i])
      throw py::value_error(std::string("[") + op + "] " + name + " has size " +
                            std::to_string(arr.shape(i)) + " in dimension " + std::to_string(i) +
                            ", expected " + std::to_string(shape[i]));
  return arr;
}

/// `obj` as a T: TypeError unless it is an integer (a Python int, a numpy integer or anything
/// with __index__, but not a bool), ValueError naming `op` and `name` unless it lies in [lo, hi].
/// (pybind11's own conversion answers out-of-range values with "incompatible function arguments".)
template <class T>
T integer(const py::handle& obj, const char* op, const char* name,
          T lo = std::numeric_limits<T>::min(), T hi = std::numeric_limits<T>::max()) {
  const std::string what = std::string("[") + op + "] " + name;
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error(what + " must be an integer, got " +
                         std::string(py::str(obj.get_type().attr("__name__"))));
  const auto value = py::reinterpret_steal<py::int_>(PyNumber_Index(obj.ptr()));
  if (!value) throw py::error_already_set();
  if (value < py::int_(lo) || value > py::int_(hi))
    throw py::value_error(what + " must lie in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                          "], got " + py::repr(value).cast<std::string>());
  return value.cast<T>();
}

/// An array extent as an int: ValueError naming `op` and `name` when it does not fit.
inline int extent(py::ssize_t size, const char* op, const char* name) {
  if (size > std::numeric_limits<int>::max())
    throw py::value_error(std::string("[") + op + "] " + name + " has size " +
                          std::to_string(size) + ", more than the largest supported (2^31 - 1)");
  return static_cast<int>(size);
}

/// A SpikeView of a Python SpikeTensor (attributes ids, n_spk, n_tot, n_neurons, device), without
/// copying. On device "cuda" the arrays are read through DLPack (PyTorch, CuPy, ...) and the view
/// points into CUDA memory; the DLPack capsules are appended to `keep_alive` when given.
SpikeView spike_view(const py::handle& spikes, const char* op, py::list* keep_alive = nullptr);

/// A read-only numpy array over `data`, kept alive by `owner`. (numpy refuses to make it writable
/// again: its base, `owner`, exposes no writable buffer.)
template <class T>
py::array_t<T> borrowed(const T* data, std::vector<py::ssize_t> shape, const py::handle& owner) {
  py::array_t<T> a(shape, data, owner);
  a.attr("setflags")(py::arg("write") = false);
  return a;
}

/// A numpy array that takes ownership of `values` (no copy).
template <class T>
py::array_t<T> owned(std::vector<T>&& values, std::vector<py::ssize_t> shape) {
  auto* heap = new std::vector<T>(std::move(values));
  py::capsule free_when_done(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, heap->data(), free_when_done);
}

void init_spikes(py::module_& m);
void init_ops(py::module_& m);
void init_optim(py::module_& m);
void init_ipu(py::module_& m);

}  // namespace saltatory::python
