// Poplar codelets of the ipu device: thin poplar::Vertex wrappers whose compute() calls the shared
// kernels/ math, one vertex per tile and sample (as the ipu-model interpreter runs them). Compiled
// for the IPU by graph.addCodelets (popc) at run time; only with the Poplar SDK, which this
// project's machines lack, so this file has never been compiled here.
// Lists on the device are [n_spk, n_tot, ids...]; flags of a tile are [n_spikes, n_candidates,
// spike ids (n), candidate ids (n)], ids global.
//   Forward:    V = the neuron model's update (kernels/neurons) of bias + sum W[ids, slice] (+ W_rec
//               rows); flags: spikes V > theta1_j, candidates theta2 < V <= theta1_j
//   Select:     the tiles' flags in tile order, keep_subset by policy -> list; dropped += losses
//   Backward:   gV = the model's carry of gV + surrogate terms of the slice's entries;  gI = g (1-a) gV
//               and the per-sample sums behind dL/dalpha and dL/dtheta1 (the model's direct terms)
//   EntryLanes: lane partial sums of W[ids_k, slice] . gI[slice];  EntryReduce: lanes -> entries
//   WeightGrad: dW[i, slice] += gI rows of the lists that i fed (each worker owns a row range)
#include <poplar/Vertex.hpp>

#include "saltatory/kernels/neurons/lif.hpp"
#include "saltatory/kernels/select.hpp"
#include "saltatory/kernels/sparse.hpp"
#include "saltatory/kernels/surrogate.hpp"

using namespace poplar;
namespace k = saltatory::kernels;

namespace {

/// The neuron model of a vertex's slice, from its fields.
k::neurons::Lif model(const Input<Vector<float>>& alpha, const Input<Vector<float>>& theta1,
                      float theta2, float gain, float beta, unsigned surrogate, unsigned reset,
                      unsigned reset_grad, unsigned readout) {
  return {&alpha[0],
          &theta1[0],
          theta2,
          gain,
          beta,
          static_cast<k::Surrogate>(surrogate),
          static_cast<k::ResetMode>(reset),
          static_cast<k::ResetGrad>(reset_grad),
          readout != 0};
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
  Input<Vector<float>> weight;               // [n_in, n]
  Input<Vector<float>> weight_rec;           // [N, n] (recurrent; else one element, unused)
  Input<Vector<int>> in_list;                // the input list this step reads
  Input<Vector<int>> own_prev;               // this layer's list of t - 1
  Input<Vector<float>> v_prev;               // [n] (zeros at t = 0)
  Output<Vector<float>> v;                   // [n]
  Input<Vector<float>> alpha, theta1, bias;  // [n] of the slice
  Output<Vector<int>> flags;                 // [2 + 2 n]
  unsigned n, j0, has_input, has_prev, recurrent, reset, reset_grad, surrogate, readout, use_bias;
  float gain, theta2, beta;

  bool compute() {
    const k::neurons::Lif m =
        model(alpha, theta1, theta2, gain, beta, surrogate, reset, reset_grad, readout);
    for (unsigned j = 0; j < n; ++j) v[j] = use_bias ? bias[j] : 0.0f;
    if (has_input) k::gather_rows(&v[0], &weight[0], n, &in_list[2], in_list[0], n);
    if (recurrent && has_prev)
      k::gather_rows(&v[0], &weight_rec[0], n, &own_prev[2], own_prev[0], n);
    for (unsigned j = 0; j < n; ++j) {
      float emitted = 0.0f;  // j's spike of t - 1 was emitted (read for the spike reset)
      for (int e = 0; has_prev && m.update_reads_emitted() && e < own_prev[0]; ++e)
        if (own_prev[2 + e] == static_cast<int>(j0 + j)) emitted = 1.0f;
      v[j] = m.update(j, has_prev, has_prev ? v_prev[j] : 0.0f, emitted, v[j]);
    }
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
  unsigned n_neurons, capacity, policy, seed_lo, seed_hi, t, b;

  bool compute() {
    int n_spk_found = 0, n_cand_found = 0;
    for (unsigned i = 0; i < flags.size(); ++i) {
      const unsigned n = (flags[i].size() - 2) / 2;
      for (int e = 0; e < flags[i][0]; ++e) found[n_spk_found++] = flags[i][2 + e];
      for (int e = 0; e < flags[i][1]; ++e) found[n_neurons + n_cand_found++] = flags[i][2 + n + e];
    }
    const uint64_t layer_seed = (static_cast<uint64_t>(seed_hi) << 32) | seed_lo;
    const uint64_t stream = k::list_stream(layer_seed, t, b);
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
  InOut<Vector<float>> gv;             // [n], carried from step t + 1
  Input<Vector<float>> v;              // V[t] of the slice
  Input<Vector<int>> list;             // this layer's list of t (spiking layers)
  Input<Vector<float>> grad_entries;   // [K] entry gradients, or [n] readout rows (slice)
  Input<Vector<float>> grad_rec;       // [K] entry gradients sent back through W_rec by t + 1
  Input<Vector<float>> alpha, theta1;  // [n] of the slice
  Output<Vector<float>> gi;            // [n]
  Input<Vector<float>> v_prev;         // V[t-1] of the slice (zeros at t = 0)
  Input<Vector<int>> list_prev;        // this layer's list of t - 1 (read for the spike reset)
  // sample b's sums over the steps so far behind dL/dalpha (gV P, gV (V - leak)) and of
  // dL/dtheta1, [n] each
  InOut<Vector<float>> d_memory, d_input, d_theta1;
  Output<Vector<float>> footprint;  // [n] scratch: where the slice's spikes of t (carry), then of
                                    // t - 1 (parameter sums) were emitted
  unsigned n, j0, first_step, last_step, readout, recurrent, reset, reset_grad, surrogate;
  float gain, theta2, beta;

  bool compute() {
    const k::neurons::Lif m =
        model(alpha, theta1, theta2, gain, beta, surrogate, reset, reset_grad, readout);
    const k::SerialBlock one;
    static_assert(k::neurons::Lif::kStates == 1 && k::neurons::Lif::kAdjoints == 1,
                  "the vertex fields hold one state and one adjoint");
    const k::neurons::Rows g{{&gv[0]}}, at{{const_cast<float*>(&v[0])}},
        prev{{first_step ? nullptr : const_cast<float*>(&v_prev[0])}},
        sums{{&d_memory[0], &d_input[0], readout ? nullptr : &d_theta1[0]}};
    if (!last_step) {  // r[t+1] of the spike reset's mask: S[t] emitted
      mark_spikes(&footprint[0], &list[0], j0, n, m.carry_reads_emitted());
      k::neurons::carry_row(one, m, g, at, &footprint[0], n);
    }
    if (readout) {
      k::add_row(&gv[0], &grad_entries[0], n);
    } else {
      k::neurons::state_grad_row(one, m, g, at, &list[2], &grad_entries[0], list[1], j0, j0 + n,
                                 sums);
      if (recurrent && !last_step)
        k::neurons::state_grad_row(one, m, g, at, &list[2], &grad_rec[0], list[1], j0, j0 + n,
                                   sums);
    }
    // r[t] of the spike reset: S[t-1] emitted
    mark_spikes(&footprint[0], &list_prev[0], j0, n, !first_step && m.update_reads_emitted());
    k::neurons::parameter_grad_row(one, m, sums, g, prev, &footprint[0], at, n);
    k::neurons::current_grad_row(one, m, &gi[0], g, n);
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
  Input<Vector<int>> lists;  // [T, B, 2 + K] lists that fed this layer
  Input<Vector<float>> gi;   // [T, B, n] of the slice
  InOut<Vector<float>> dw;   // rows [row0, row1) of [rows, n]: this worker's
  unsigned n, steps, batch, width, delay, row0, row1;

  bool compute() {
    for (unsigned t = steps; t-- > delay;)
      for (unsigned b = 0; b < batch; ++b) {
        const int* list = &lists[((t - delay) * batch + b) * width];
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
