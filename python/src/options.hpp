// The named options of the Python API, one table each: the only place their spellings live.
// Python reads the tables (option_names) to check arguments early; C++ parses the same names.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"
#include "saltatory/ops/lif_stack.hpp"

namespace saltatory::python {

template <class E>
using Options = std::vector<std::pair<const char*, E>>;

inline const Options<LayerKind> kKinds{{"lif", LayerKind::lif},
                                       {"recurrent_lif", LayerKind::recurrent_lif},
                                       {"readout", LayerKind::readout}};
inline const Options<kernels::neurons::Neuron> kNeurons{{"lif", kernels::neurons::Neuron::lif},
                                                        {"cuba", kernels::neurons::Neuron::cuba},
                                                        {"alif", kernels::neurons::Neuron::alif},
                                                        {"adlif", kernels::neurons::Neuron::adlif}};
inline const Options<Surrogate> kSurrogates{{"super_spike", Surrogate::super_spike},
                                            {"arctan", Surrogate::arctan},
                                            {"triangle", Surrogate::triangle},
                                            {"sigmoid", Surrogate::sigmoid}};
inline const Options<ResetMode> kResets{
    {"state", ResetMode::state}, {"spike", ResetMode::spike}, {"subtract", ResetMode::subtract}};
inline const Options<ResetGrad> kResetGrads{{"pass", ResetGrad::pass}, {"mask", ResetGrad::mask}};
inline const Options<Coupling> kCouplings{{"same_step", Coupling::same_step},
                                          {"delayed", Coupling::delayed}};
inline const Options<Mode> kModes{{"sparse", Mode::sparse}, {"dense", Mode::dense}};
inline const Options<OverflowPolicy> kOverflows{{"random", OverflowPolicy::random},
                                                {"lowest", OverflowPolicy::lowest_ids}};

/// The value named `name`; ValueError "[op] what must be one of ..., got 'name'" otherwise.
template <class E>
E parse(const std::string& name, const char* op, const char* what, const Options<E>& options) {
  std::string expected;
  for (const auto& [key, value] : options) {
    if (name == key) return value;
    expected += std::string(expected.empty() ? "" : ", ") + key;
  }
  throw py::value_error(std::string("[") + op + "] " + what + " must be one of " + expected +
                        ", got '" + name + "'");
}

/// The name of `value`.
template <class E>
std::string name_of(E value, const Options<E>& options) {
  for (const auto& [key, v] : options)
    if (v == value) return key;
  return "?";
}

/// The spellings of a table.
template <class E>
std::vector<std::string> names(const Options<E>& options) {
  std::vector<std::string> out;
  for (const auto& [key, value] : options) out.emplace_back(key);
  return out;
}

}  // namespace saltatory::python
