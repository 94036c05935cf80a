// Poplar codelets of the ipu device: thin poplar::Vertex wrappers whose compute() calls the shared
// kernels/ math, one vertex per tile and sample (as the ipu-model interpreter runs them). Compiled
// for the IPU by graph.addCodelets (popc) at run time; only with the Poplar SDK, which this
// project's machines lack, so here it is compiled only against the SDK mock (tests/poplar_mock).
// Lists on the device are [n_spk, n_tot, ids...]; flags of a tile are [n_spikes, n_candidates,
// spike ids (n), candidate ids (n)], ids global.
//   Forward:    the neuron model's states (kernels/neurons/model.hpp) updated from the current
//               bias + sum W[ids, slice] (+ W_rec rows); flags of its membrane V: spikes
//               V > theta1_j, candidates theta2 < V <= theta1_j
//   Select:     the tiles' flags in tile order, keep_subset by policy -> list (the overflow stream
//               of absolute step step0 + t); dropped += losses
//   Backward:   the model's adjoints carried, plus surrogate terms of the slice's entries; gI from
//               them, and the per-sample sums behind its parameter gradients (its direct terms)
//   EntryLanes: lane partial sums of W[ids_k, slice] . gI[slice];  EntryReduce: lanes -> entries
//   WeightGrad: dW[i, slice] += gI rows of the lists that i fed (each worker owns a row range)
#include <poplar/Vertex.hpp>

#include "saltatory/kernels/neurons/model.hpp"
#include "saltatory/kernels/select.hpp"
#include "saltatory/kernels/sparse.hpp"
#include "saltatory/kernels/surrogate.hpp"

using namespace poplar;
namespace k = saltatory::kernels;

namespace {

/// The neuron model of a vertex's slice, from its fields: the model's per-neuron parameters in
/// its order (kernels/neurons/model.hpp), and the layer's settings.
k::neurons::Model model(unsigned neuron, const Vector<Input<Vector<float>>>& params, float theta2,
                        float gain, float beta, unsigned surrogate, unsigned reset,
                        unsigned reset_grad, unsigned readout) {
  k::neurons::Model m;
  m.neuron = static_cast<k::neurons::Neuron>(neuron);
  for (unsigned i = 0; i < params.size() && i < k::neurons::kMaxParams; ++i)
    m.params.param[i] = &params[i][0];
  m.settings = {theta2,
                gain,
                beta,
                static_cast<k::Surrogate>(surrogate),
                static_cast<k::ResetMode>(reset),
                static_cast<k::ResetGrad>(reset_grad),
                readout != 0};
  return m;
}

/// The rows of a list-valued field: one region of [n] per variable (none when `none`).
template <class Regions>
k::neurons::Rows rows(Regions& regions, bool none = false) {
  k::neurons::Rows r;
  for (unsigned i = 0; !none && i < regions.size() && i < k::neurons::kMaxRows; ++i)
    r.row[i] = const_cast<float*>(&regions[i][0]);
  return r;
}

/// footprint = 1 where `list`'s spikes ([n_spk, n_tot, ids...], ids global) fall in the slice
/// [j0, j0 + n), 0 elsewhere; all 0 unless `marked`.
void mark_spikes(float* footprint, const int* list, unsigned j0, unsigned n, bool marked) {
  for (unsigned j = 0; j < n; ++j) footprint[j] = 0.0f;
  for (int e = 0; marked && e < list[0]; ++e) {
    const int j = list[2 + e] - static_cast<int>(j0);
    if (j >= 0 && j < static_cast<int>(n)) footprint[j] = 1.0f;
  }
}

}  // namespace

class Forward : public Vertex {
 public:
  Input<Vector<float>> weight;              // [n_in, n]
  Input<Vector<float>> weight_rec;          // [N, n] (recurrent; else one element, unused)
  Input<Vector<int>> in_list;               // the input list this step reads
  Input<Vector<int>> own_prev;              // this layer's list of t - 1
  Vector<Input<Vector<float>>> state_prev;  // the model's states of t - 1, [n] each
  Vector<Output<Vector<float>>> state;      // the model's states of t, [n] each (V first)
  Vector<Input<Vector<float>>> neuron;      // the model's per-neuron parameters, [n] each
  Input<Vector<float>> bias;                // [n] of the slice
  Output<Vector<int>> flags;                // [2 + 2 n]
  Output<Vector<float>> footprint;          // [n] scratch: where S[t-1] was emitted
  unsigned n, j0, has_input, has_prev, recurrent, neuron_model, reset, reset_grad, surrogate,
      readout, use_bias;
  float gain, theta2, beta;

  bool compute() {
    const k::neurons::Model m =
        model(neuron_model, neuron, theta2, gain, beta, surrogate, reset, reset_grad, readout);
    float* v = &state[0][0];  // the input current, then V[t]
    for (unsigned j = 0; j < n; ++j) v[j] = use_bias ? bias[j] : 0.0f;
    if (has_input) k::gather_rows(v, &weight[0], n, &in_list[2], in_list[0], n);
    if (recurrent && has_prev) k::gather_rows(v, &weight_rec[0], n, &own_prev[2], own_prev[0], n);
    // r[t] of the spike reset: S[t-1] emitted
    mark_spikes(&footprint[0], &own_prev[0], j0, n, has_prev && m.update_reads_emitted());
    k::neurons::update_row(k::SerialBlock{}, m, rows(state), rows(state_prev, !has_prev),
                           &footprint[0], v, n);
    int spikes = 0, candidates = 0;
    for (unsigned j = 0; j < n && !readout; ++j) {
      const k::neurons::Flag flag = m.flag(j, v[j]);
      if (flag == k::neurons::spike)
        flags[2 + spikes++] = static_cast<int>(j0 + j);
      else if (flag == k::neurons::candidate)
        flags[2 + n + candidates++] = static_cast<int>(j0 + j);
    }
    flags[0] = spikes;
    flags[1] = candidates;
    return true;
  }
};

class Select : public Vertex {
 public:
  Vector<Input<Vector<int>>> flags;            // one per tile of the layer, in tile order
  Output<Vector<int>> list;                    // [2 + K]
  InOut<Vector<int>> found;                    // scratch [2 N]
  InOut<Vector<unsigned long long>> priority;  // scratch [K]
  InOut<Vector<int>> dropped;                  // [2]: spikes and candidates lost to capacity
  Input<Vector<int>> step0;  // [2]: the steps before this call (low, high 32 bits)
  unsigned n_neurons, capacity, policy, seed_lo, seed_hi, t, b;

  bool compute() {
    int n_spk_found = 0, n_cand_found = 0;
    for (unsigned i = 0; i < flags.size(); ++i) {
      const unsigned n = (flags[i].size() - 2) / 2;
      for (int e = 0; e < flags[i][0]; ++e) found[n_spk_found++] = flags[i][2 + e];
      for (int e = 0; e < flags[i][1]; ++e) found[n_neurons + n_cand_found++] = flags[i][2 + n + e];
    }
    const uint64_t layer_seed = (static_cast<uint64_t>(seed_hi) << 32) | seed_lo;
    const uint64_t before = (static_cast<uint64_t>(static_cast<unsigned>(step0[1])) << 32) |
                            static_cast<unsigned>(step0[0]);
    const uint64_t stream = k::list_stream(layer_seed, static_cast<int64_t>(before + t), b);
    const auto policy_kind = static_cast<k::OverflowPolicy>(policy);
    auto* prio = reinterpret_cast<uint64_t*>(&priority[0]);
    const int n_spk =
        k::keep_subset(&found[0], n_spk_found, &list[2], capacity, policy_kind, stream, prio);
    const int n_cand = k::keep_subset(&found[n_neurons], n_cand_found, &list[2 + n_spk],
                                      capacity - n_spk, policy_kind, k::mix64(stream + 1), prio);
    list[0] = n_spk;
    list[1] = n_spk + n_cand;
    dropped[0] += n_spk_found - n_spk;
    dropped[1] += n_cand_found - n_cand;
    return true;
  }
};

class Backward : public Vertex {
 public:
  Vector<InOut<Vector<float>>> adjoints;    // the model's adjoints, [n] each, carried from t + 1
  Vector<Input<Vector<float>>> state;       // the model's states of t of the slice, [n] each
  Vector<Input<Vector<float>>> state_prev;  // ... of t - 1 (no_prev: none)
  Vector<Input<Vector<float>>> neuron;      // the model's per-neuron parameters, [n] each
  Input<Vector<int>> list;                  // this layer's list of t (spiking layers)
  Input<Vector<float>> grad_entries;        // [K] entry gradients, or [n] readout rows (slice)
  Input<Vector<float>> grad_rec;            // [K] entry gradients sent back through W_rec by t + 1
  Output<Vector<float>> gi;                 // [n]
  Input<Vector<int>> list_prev;             // this layer's list of t - 1 (read for the spike reset)
  // sample b's per-neuron sums over the steps so far behind the model's parameter gradients,
  // [n] each
  Vector<InOut<Vector<float>>> sums;
  Output<Vector<float>> footprint;  // [n] scratch: where the slice's spikes of t (carry), then of
                                    // t - 1 (parameter sums) were emitted
  unsigned n, j0, no_prev, last_step, readout, recurrent, neuron_model, reset, reset_grad,
      surrogate;
  float gain, theta2, beta;

  bool compute() {
    const k::neurons::Model m =
        model(neuron_model, neuron, theta2, gain, beta, surrogate, reset, reset_grad, readout);
    const k::SerialBlock one;
    const k::neurons::Rows g = rows(adjoints), at = rows(state),
                           prev = rows(state_prev, no_prev != 0), sum_rows = rows(sums);
    if (!last_step) {  // r[t+1] of the spike reset's mask: S[t] emitted
      mark_spikes(&footprint[0], &list[0], j0, n, m.carry_reads_emitted());
      k::neurons::carry_row(one, m, g, at, &footprint[0], n);
    }
    if (readout) {
      k::add_row(g[0], &grad_entries[0], n);
    } else {
      k::neurons::state_grad_row(one, m, g, at, &list[2], &grad_entries[0], list[1], j0, j0 + n,
                                 sum_rows);
      if (recurrent && !last_step)
        k::neurons::state_grad_row(one, m, g, at, &list[2], &grad_rec[0], list[1], j0, j0 + n,
                                   sum_rows);
    }
    k::neurons::current_grad_row(one, m, &gi[0], g, n);  // completes the adjoints of t
    // r[t] of the spike reset: S[t-1] emitted
    mark_spikes(&footprint[0], &list_prev[0], j0, n, !no_prev && m.update_reads_emitted());
    k::neurons::parameter_grad_row(one, m, sum_rows, g, prev, &footprint[0], at, n);
    return true;
  }
};

class EntryLanes : public Vertex {
 public:
  Input<Vector<float>> weight;  // [rows, n] slice of W (or W_rec)
  Input<Vector<int>> list;      // the entries whose gradients these are
  Input<Vector<float>> gi;      // [n]
  Output<Vector<float>> lanes;  // [K * kDotLanes]
  unsigned n, j0;

  bool compute() {
    for (int e = 0; e < list[1]; ++e) {
      float* lane = &lanes[e * k::kDotLanes];
      for (int l = 0; l < k::kDotLanes; ++l) lane[l] = 0.0f;
      k::dot_row_lanes(lane, &weight[list[2 + e] * n], &gi[0], j0, j0 + n);
    }
    return true;
  }
};

class EntryReduce : public Vertex {
 public:
  Vector<Input<Vector<float>>> lanes;  // one per tile, in tile order
  Input<Vector<int>> list;
  InOut<Vector<float>> grad;  // [K]: += the entries' dot products (or = with `assign`)
  unsigned assign;

  bool compute() {
    for (int e = 0; e < list[1]; ++e) {
      float lane[k::kDotLanes] = {};
      for (unsigned i = 0; i < lanes.size(); ++i)
        for (int l = 0; l < k::kDotLanes; ++l) lane[l] += lanes[i][e * k::kDotLanes + l];
      const float dot = k::reduce_lanes(lane);
      grad[e] = assign ? dot : grad[e] + dot;
    }
    return true;
  }
};

class WeightGrad : public Vertex {
 public:
  Input<Vector<int>> lists;  // [before + T, B, 2 + K] lists that fed this layer (steps -before..)
  Input<Vector<float>> gi;   // [T, B, n] of the slice
  InOut<Vector<float>> dw;   // rows [row0, row1) of [rows, n]: this worker's
  unsigned n, steps, batch, width, delay, before, row0, row1;

  bool compute() {
    for (unsigned t = steps; t-- > 0 && t + before >= delay;)
      for (unsigned b = 0; b < batch; ++b) {
        const int* list = &lists[((t + before - delay) * batch + b) * width];
        const float* g = &gi[(t * batch + b) * n];
        for (int e = 0; e < list[0]; ++e) {
          const auto i = static_cast<unsigned>(list[2 + e]);
          if (i >= row0 && i < row1) k::add_row(&dw[(i - row0) * n], g, n);
        }
      }
    return true;
  }
};

class BiasGrad : public Vertex {
 public:
  Input<Vector<float>> gi;  // [T, B, n] of the slice
  InOut<Vector<float>> dbias;
  unsigned n, rows;

  bool compute() {
    for (unsigned r = rows; r-- > 0;) k::add_row(&dbias[0], &gi[r * n], n);
    return true;
  }
};
