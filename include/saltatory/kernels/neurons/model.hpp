// The neuron model of a layer, whichever it is: what every backend holds and calls. It names the
// layer's unit (kernels/neurons/<unit>.hpp) and carries the unit's per-neuron parameters and
// layer-wide settings; `visit` is the one switch from a model's kind to its unit, and the row
// functions below forward to the unit's. Backends never name a unit, so a new model is a new unit
// plus a case in `visit`.
// Selection is the same for every model: row 0 of the states is the membrane (the ALIF stores
// u = V - b a there, so that its moving threshold is theta1 on u);
//   spike: V > theta1_j;   gradient candidate: theta2 < V <= theta1_j
#pragma once

#include "saltatory/kernels/neurons/adlif.hpp"
#include "saltatory/kernels/neurons/alif.hpp"
#include "saltatory/kernels/neurons/cuba.hpp"
#include "saltatory/kernels/neurons/lif.hpp"

namespace saltatory::kernels::neurons {

/// The neuron models: the LIF (neurons/lif.hpp), the current-based LIF (neurons/cuba.hpp), the
/// adaptive-threshold LIF (neurons/alif.hpp) and the current-adaptation LIF (neurons/adlif.hpp).
enum class Neuron : int { lif = 0, cuba = 1, alif = 2, adlif = 3 };

/// A layer's (or a slice's) neuron model.
struct Model {
  Neuron neuron = Neuron::lif;
  Params<const float> params;  ///< per neuron, by slot (neurons/rows.hpp)
  Settings settings{};

  /// f(unit): the layer's unit over the model's parameters and settings.
  template <class F>
  SALTATORY_HD decltype(auto) visit(F&& f) const {
    switch (neuron) {
      case Neuron::cuba: return f(Cuba::of(params, settings));
      case Neuron::alif: return f(Alif::of(params, settings));
      case Neuron::adlif: return f(Adlif::of(params, settings));
      case Neuron::lif:
      default: return f(Lif::of(params, settings));
    }
  }

  /// The model of neurons [j0, j0 + n) of the layer (an IPU tile's slice).
  SALTATORY_HD Model slice(int j0) const {
    Model s = *this;
    for (const float*& p : s.params.param)
      if (p != nullptr) p += j0;
    return s;
  }

  /// Counts of the unit's per-neuron parameters and rows (neurons/rows.hpp).
  SALTATORY_HD int param_count() const {
    return visit([](const auto& u) { return u.kParams; });
  }
  /// Whether the unit reads per-neuron parameter slot `slot`.
  SALTATORY_HD bool uses(int slot) const {
    return visit([slot](const auto& u) { return u.uses(slot); });
  }
  SALTATORY_HD int states() const {
    return visit([](const auto& u) { return u.kStates; });
  }
  SALTATORY_HD int adjoints() const {
    return visit([](const auto& u) { return u.kAdjoints; });
  }
  SALTATORY_HD int sums() const {
    return visit([](const auto& u) { return u.kSums; });
  }

  SALTATORY_HD bool readout() const { return settings.readout; }
  /// [n] spike thresholds (spiking layers) and the candidate threshold: what selection reads.
  SALTATORY_HD const float* theta1() const { return params[1]; }
  SALTATORY_HD float theta2() const { return settings.theta2; }
  /// Which list V of neuron j belongs to.
  SALTATORY_HD Flag flag(int j, float v) const { return flag_of(v, theta1()[j], theta2()); }
  /// Whether the carry reads which spikes of t were emitted.
  SALTATORY_HD bool carry_reads_emitted() const {
    return visit([](const auto& u) { return u.carry_reads_emitted(); });
  }
  /// Whether the carry reads the states of t. Without it, and without parameter sums, backward
  /// reads the states only through state_grad_row, which reads row 0 (the membrane) at the listed
  /// entries and nowhere else: so those values are all that backward needs of the forward.
  SALTATORY_HD bool carry_reads_states() const {
    return visit([](const auto& u) { return u.carry_reads_states(); });
  }
  /// Whether the update reads which spikes of t-1 were emitted.
  SALTATORY_HD bool update_reads_emitted() const {
    return visit([](const auto& u) { return u.update_reads_emitted(); });
  }
};

// The row functions of the layer's unit (see the unit for what each computes).

template <class Blk>
SALTATORY_HD void update_row(Blk&& blk, const Model& m, Rows now, Rows prev, const float* emitted,
                             const float* current, int n) {
  m.visit([&](const auto& u) { update_row(blk, u, now, prev, emitted, current, n); });
}

template <class Blk>
SALTATORY_HD void carry_row(Blk&& blk, const Model& m, Rows g, Rows at, const float* emitted,
                            int n) {
  m.visit([&](const auto& u) { carry_row(blk, u, g, at, emitted, n); });
}

template <class Blk>
SALTATORY_HD void state_grad_row(Blk&& blk, const Model& m, Rows g, Rows at, const int32_t* ids,
                                 const float* gs, int n_tot, int32_t j0 = 0,
                                 int32_t j1 = 0x7FFFFFFF, Rows sums = {}) {
  m.visit([&](const auto& u) { state_grad_row(blk, u, g, at, ids, gs, n_tot, j0, j1, sums); });
}

template <class Blk>
SALTATORY_HD void dense_state_grad_row(Blk&& blk, const Model& m, Rows g, Rows at, const float* gs,
                                       int n, Rows sums = {}) {
  m.visit([&](const auto& u) { dense_state_grad_row(blk, u, g, at, gs, n, sums); });
}

template <class Blk>
SALTATORY_HD void parameter_grad_row(Blk&& blk, const Model& m, Rows sums, Rows g, Rows prev,
                                     const float* emitted, Rows now, int n) {
  m.visit([&](const auto& u) { parameter_grad_row(blk, u, sums, g, prev, emitted, now, n); });
}

template <class Blk>
SALTATORY_HD void current_grad_row(Blk&& blk, const Model& m, float* gi, Rows g, int n) {
  m.visit([&](const auto& u) { current_grad_row(blk, u, gi, g, n); });
}

/// The parameter gradients of neuron j added into `grads` (by slot; null entries are
/// skipped) from its sums over t and b ([sums(), n]: row i at sums + i n).
SALTATORY_HD void add_parameter_grads(const Model& m, int j, const float* sums, int n,
                                      Params<float> grads) {
  m.visit([&](const auto& u) { add_parameter_grads(u, j, sums, n, grads); });
}

}  // namespace saltatory::kernels::neurons
