// The ipu device: emits a poplar::Graph from the tile plan (include/saltatory/ipu/plan.hpp), one
// engine per shape, and runs it on an attached IPU. Built only with the Poplar SDK; this project's
// machines have none, so this file is compiled here only against a declarations-only mock of the
// SDK (tests/poplar_mock) and has never run. Kept mechanical: the
// compute sets are those the ipu-model interpreter executes, unrolled over T, one vertex per tile
// and sample (codelets.cpp).
// Device tensors, per layer and tile (neurons [j0, j1), n of them): W [n_in, n], W_rec [N, n],
// bias [n], gI [T, B, n], dW, dW_rec, dbias, flags [B, 2 + 2n], lanes [B, K_max, 8]; of the
// neuron model (kernels/neurons/model.hpp): each per-neuron parameter [n], each state [T, B, n]
// (V first), each adjoint [B, n], and its per-sample parameter sums [sums(), B, n] (always
// computed: the training program is built at forward, before backward says what it wants);
// per layer on its first tile: lists [T, B, 2 + K], entry gradients [T, B, K].
// Continuing a sequence (an engine built for it): per tile the initial states [B, n] of each
// variable, per spiking layer its lists of step -1 [B, 2 + K], and the step count before, which the
// selection's overflow streams continue from; every forward copies out the states of step T - 1.
// Backward runs the training program (the forward again, then BPTT), so engines hold no state
// between calls. Entry gradients add the tiles' lane partial sums and weight gradients run per
// worker over rows: the sums are ordered differently from the CPU's, so results agree with it to
// rounding, not bit for bit (the interpreter, which chains the lanes, is the bit-exact model).
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <poplar/DeviceManager.hpp>
#include <poplar/Engine.hpp>
#include <poplar/Graph.hpp>
#include <poplar/Program.hpp>
#include <sstream>

#include "backends/common/model.hpp"
#include "backends/optional.hpp"
#include "saltatory/core/error.hpp"
#include "saltatory/ipu/plan.hpp"
#include "saltatory/kernels/select.hpp"
#include "saltatory/kernels/sparse.hpp"

namespace saltatory {

namespace {

using poplar::Tensor;
namespace prog = poplar::program;

struct TileTensors {
  int j0 = 0, j1 = 0;
  unsigned tile = 0;
  Tensor w, w_rec, bias, gi, dw, dw_rec, dbias, flags, lanes, zeros;
  Tensor sums, footprint;
  std::vector<Tensor> neuron, state, adjoint;  ///< the model's parameters, states and adjoints
  std::vector<Tensor> initial;  ///< continuing: the model's states before step 0, [B, n] each
};

/// The stream of layer l's per-neuron model parameter i.
std::string param_stream(size_t l, size_t i) {
  return "p" + std::to_string(i) + "." + std::to_string(l);
}

/// The stream of state variable k of layer l: "init" (the initial state, in) or "last" (the states
/// of step T - 1, out).
std::string state_stream(const char* what, size_t l, size_t k) {
  return std::string(what) + std::to_string(k) + "." + std::to_string(l);
}

/// One list in the device's layout [n_spk, n_tot, ids...] (the first n_tot ids; vertices read no
/// further).
void pack_list(int* out, int n_spk, int n_tot, const int32_t* ids) {
  out[0] = n_spk;
  out[1] = n_tot;
  std::copy_n(ids, n_tot, out + 2);
}

struct LayerTensors {
  std::vector<TileTensors> tiles;
  unsigned list_tile = 0;
  Tensor list, grad_entries, grad_rec, found, priority, dropped, grad_rows;
  /// Continuing (spiking layers): the lists of step -1, [B, 2 + K], and those followed by `list`,
  /// one variable [(1 + T) B (2 + K)] whose first B lists are `before`.
  Tensor before, with_before;
};

/// One compiled shape: its engine and the host buffers its streams read and write.
struct Compiled {
  std::unique_ptr<poplar::Engine> engine;
  std::map<std::string, std::vector<float>> floats;
  std::map<std::string, std::vector<int>> ints;
};

poplar::Device& device() {
  static poplar::Device attached = [] {
    auto manager = poplar::DeviceManager::createDeviceManager();
    for (auto& d : manager.getDevices(poplar::TargetType::IPU, 1))
      if (d.attach()) return std::move(d);
    throw Error("device", "ipu: no IPU could be attached");
  }();
  return attached;
}

class Emitter {
 public:
  Emitter(const StackConfig& config, const ipu::Plan& plan, int T, int B, int k_in, bool continues)
      : config_(config),
        plan_(plan),
        T_(T),
        B_(B),
        k_in_(k_in),
        continues_(continues),
        graph_(device().getTarget()) {
    graph_.addCodelets(SALTATORY_CODELETS, poplar::CodeletFileType::Auto,
                       std::string("-O2 -ffp-contract=off -I") + SALTATORY_INCLUDE_DIR);
    input_ = variable(poplar::INT, T * B * (2 + k_in), 0, "input");
    grad_input_ = variable(poplar::FLOAT, T * B * k_in, 0, "grad_input");
    step0_ = variable(poplar::INT, 2, 0, "step0");  // the steps before, low and high 32 bits
    for (size_t l = 0; l < config.layers.size(); ++l) add_layer(l);
    prog::Sequence forward_body, backward_body;
    build_forward(forward_body);
    build_backward(backward_body);
    for (prog::Sequence* seq : {&forward_, &train_}) {
      copy_in(*seq, "input", {input_});
      copy_in(*seq, "step0", {step0_});
      for (size_t l = 0; l < layers_.size(); ++l) {
        const std::string id = std::to_string(l);
        copy_in(*seq, "w" + id, each(l, &TileTensors::w));
        copy_in(*seq, "wr" + id, each(l, &TileTensors::w_rec));
        for (size_t i = 0; i < layers_[l].tiles[0].neuron.size(); ++i)
          copy_in(*seq, param_stream(l, i), each(l, &TileTensors::neuron, i));
        copy_in(*seq, "bias" + id, each(l, &TileTensors::bias));
        for (size_t k = 0; continues_ && k < layers_[l].tiles[0].initial.size(); ++k)
          copy_in(*seq, state_stream("init", l, k), each(l, &TileTensors::initial, k));
        if (continues_ && config.layers[l].kind != LayerKind::readout)
          copy_in(*seq, "before" + id, {layers_[l].before});
        seq->add(prog::Copy(zeros(poplar::INT, 2 * B, layers_[l].list_tile), layers_[l].dropped));
      }
      seq->add(forward_body);
    }
    for (size_t l = 0; l < layers_.size(); ++l) {
      const std::string id = std::to_string(l);
      copy_out(forward_, "list" + id, {layers_[l].list});
      copy_out(forward_, "dropped" + id, {layers_[l].dropped});
      copy_out(forward_, "v" + id, each(l, &TileTensors::state, 0));
      for (size_t k = 0; k < layers_[l].tiles[0].state.size(); ++k) {
        std::vector<Tensor> last;  // the states of step T - 1, [B, n] per tile
        for (const TileTensors& tile : layers_[l].tiles)
          last.push_back(row_block(tile.state[k], T - 1, B, tile.j1 - tile.j0));
        copy_out(forward_, state_stream("last", l, k), last);
      }
      const bool readout = config.layers[l].kind == LayerKind::readout;
      copy_in(train_, "g" + id, {readout ? layers_[l].grad_rows : layers_[l].grad_entries});
    }
    train_.add(prog::Copy(zeros(poplar::FLOAT, grad_input_.numElements(), 0), grad_input_));
    train_.add(backward_body);
    copy_out(train_, "grad_input", {grad_input_});
    for (size_t l = 0; l < layers_.size(); ++l) {
      const std::string id = std::to_string(l);
      copy_out(train_, "dw" + id, each(l, &TileTensors::dw));
      copy_out(train_, "dwr" + id, each(l, &TileTensors::dw_rec));
      copy_out(train_, "db" + id, each(l, &TileTensors::dbias));
      copy_out(train_, "sums" + id, each(l, &TileTensors::sums));
    }
  }

  /// An engine with programs 0 (forward) and 1 (forward and backward), loaded when it runs.
  std::unique_ptr<Compiled> compile() {
    auto c = std::make_unique<Compiled>();
    c->engine =
        std::make_unique<poplar::Engine>(graph_, std::vector<prog::Program>{forward_, train_});
    for (auto& [name, stream] : streams_) {
      if (stream.second.elementType() == poplar::INT) {
        c->ints[name].resize(stream.second.numElements());
        c->engine->connectStream(name, c->ints[name].data());
      } else {
        c->floats[name].resize(stream.second.numElements());
        c->engine->connectStream(name, c->floats[name].data());
      }
    }
    return c;
  }

 private:
  Tensor variable(const poplar::Type& type, size_t size, unsigned tile, const std::string& name) {
    Tensor t = graph_.addVariable(type, {size}, name);
    graph_.setTileMapping(t, tile);
    return t;
  }
  Tensor zeros(const poplar::Type& type, size_t size, unsigned tile) {
    Tensor t = graph_.addConstant(type, {size}, 0);
    graph_.setTileMapping(t, tile);
    return t;
  }
  std::vector<Tensor> each(size_t l, Tensor TileTensors::*member) const {
    std::vector<Tensor> out;
    for (const TileTensors& t : layers_[l].tiles) out.push_back(t.*member);
    return out;
  }
  /// Variable i of a model's per-tile set (parameters, states), one tensor per tile.
  std::vector<Tensor> each(size_t l, std::vector<Tensor> TileTensors::*member, size_t i) const {
    std::vector<Tensor> out;
    for (const TileTensors& t : layers_[l].tiles) out.push_back((t.*member)[i]);
    return out;
  }
  /// Host -> device copy of `tensors` (concatenated, tile order) through stream `name`.
  void copy_in(prog::Sequence& seq, const std::string& name, const std::vector<Tensor>& tensors) {
    auto it = streams_.find(name);
    if (it == streams_.end()) {
      const Tensor all = poplar::concat(tensors);
      auto stream = graph_.addHostToDeviceFIFO(name, all.elementType(), all.numElements());
      it = streams_.emplace(name, std::make_pair(stream, all)).first;
    }
    seq.add(prog::Copy(it->second.first, it->second.second));
  }
  /// Device -> host copy of `tensors` (concatenated, tile order) through stream `name`.
  void copy_out(prog::Sequence& seq, const std::string& name, const std::vector<Tensor>& tensors) {
    const Tensor all = poplar::concat(tensors);
    auto stream = graph_.addDeviceToHostFIFO(name, all.elementType(), all.numElements());
    streams_.emplace(name, std::make_pair(stream, all));
    seq.add(prog::Copy(all, stream));
  }

  void add_layer(size_t l) {
    const LayerConfig& c = config_.layers[l];
    const ipu::LayerPlacement& p = plan_.layers[l];
    const bool readout = c.kind == LayerKind::readout;
    const int K = readout ? 0 : c.capacity,
              k_below = l == 0 ? k_in_ : config_.layers[l - 1].capacity;
    const common::Model model = common::layer_model(c, LayerParams{});  // its counts
    LayerTensors& L = layers_.emplace_back();
    L.list_tile = static_cast<unsigned>(p.first_tile);
    const std::string id = std::to_string(l);
    const size_t width = 2 + K, step = static_cast<size_t>(B_) * width;
    if (continues_ && !readout) {
      L.with_before = variable(poplar::INT, (T_ + 1) * step, L.list_tile, "list" + id);
      L.before = L.with_before.slice(0, step);
      L.list = L.with_before.slice(step, (T_ + 1) * step);
    } else {
      L.list = variable(poplar::INT, T_ * step, L.list_tile, "list" + id);
    }
    L.grad_entries = variable(poplar::FLOAT, std::max(1, T_ * B_ * K), L.list_tile, "gs" + id);
    L.grad_rec = variable(poplar::FLOAT, std::max(1, B_ * K), L.list_tile, "grec" + id);
    L.found = variable(poplar::INT, B_ * 2 * c.n_out, L.list_tile, "found" + id);
    L.priority = variable(poplar::UNSIGNED_LONGLONG, std::max(1, B_ * K), L.list_tile, "prio" + id);
    L.dropped = variable(poplar::INT, 2 * B_, L.list_tile, "dropped" + id);  // [B, 2]
    for (int i = 0; i < p.tiles; ++i) {
      const ipu::Plan::TileSlice s = plan_.tile(p.first_tile + i);
      TileTensors& t = L.tiles.emplace_back();
      t.j0 = s.begin;
      t.j1 = s.end;
      t.tile = static_cast<unsigned>(p.first_tile + i);
      const size_t n = s.end - s.begin, lanes = std::max(k_below, K) * kernels::kDotLanes;
      const std::string tid = id + "." + std::to_string(i);
      t.w = variable(poplar::FLOAT, c.n_in * n, t.tile, "w" + tid);
      t.w_rec = variable(poplar::FLOAT, c.kind == LayerKind::recurrent_lif ? c.n_out * n : 1,
                         t.tile, "wr" + tid);
      for (int k = 0; k < model.param_count(); ++k)
        t.neuron.push_back(variable(poplar::FLOAT, n, t.tile, "p" + std::to_string(k) + tid));
      for (int k = 0; k < model.states(); ++k)
        t.state.push_back(
            variable(poplar::FLOAT, T_ * B_ * n, t.tile, "s" + std::to_string(k) + tid));
      for (int k = 0; k < model.adjoints(); ++k)
        t.adjoint.push_back(variable(poplar::FLOAT, B_ * n, t.tile, "g" + std::to_string(k) + tid));
      for (int k = 0; continues_ && k < model.states(); ++k)
        t.initial.push_back(variable(poplar::FLOAT, B_ * n, t.tile, "i" + std::to_string(k) + tid));
      t.bias = variable(poplar::FLOAT, n, t.tile, "bias" + tid);
      t.gi = variable(poplar::FLOAT, T_ * B_ * n, t.tile, "gi" + tid);
      t.dw = variable(poplar::FLOAT, c.n_in * n, t.tile, "dw" + tid);
      t.dw_rec = variable(poplar::FLOAT, t.w_rec.numElements(), t.tile, "dwr" + tid);
      t.dbias = variable(poplar::FLOAT, n, t.tile, "db" + tid);
      t.flags = variable(poplar::INT, B_ * (2 + 2 * n), t.tile, "flags" + tid);
      t.lanes = variable(poplar::FLOAT, B_ * lanes, t.tile, "lanes" + tid);
      t.zeros = zeros(poplar::FLOAT, n, t.tile);
      t.sums = variable(poplar::FLOAT, model.sums() * B_ * n, t.tile, "sums" + tid);
      t.footprint = variable(poplar::FLOAT, B_ * n, t.tile, "fp" + tid);
    }
    if (readout) {
      std::vector<Tensor> rows;
      for (const TileTensors& t : L.tiles)
        rows.push_back(variable(poplar::FLOAT, t.gi.numElements(), t.tile, "grows"));
      L.grad_rows = poplar::concat(rows);
    }
  }

  /// Layer l's list (l = -1: the input) at (t, b); at t = -1 a continued spiking layer's list of
  /// step -1 (else any list: the vertex then ignores it).
  Tensor list_at(size_t l, int t, int b) const {
    const bool input = l == static_cast<size_t>(-1);
    const int K = input ? k_in_ : config_.layers[l].capacity;
    const size_t w = 2 + K;
    if (t < 0 && continues_ && !input && config_.layers[l].kind != LayerKind::readout)
      return layers_[l].before.slice(b * w, (b + 1) * w);
    const Tensor& all = input ? input_ : layers_[l].list;
    const size_t at = (static_cast<size_t>(std::max(t, 0)) * B_ + b) * w;
    return all.slice(at, at + w);
  }
  static Tensor row(const Tensor& x, int t, int b, int B, size_t n) {
    const size_t at = (static_cast<size_t>(t) * B + b) * n;
    return x.slice(at, at + n);
  }
  /// The rows of step t, [B, n], of a [T, B, n] tensor.
  static Tensor row_block(const Tensor& x, int t, int B, size_t n) {
    const size_t at = static_cast<size_t>(t) * B * n;
    return x.slice(at, at + B * n);
  }
  /// Whether step t - 1 exists: t > 0, or any t when continuing.
  bool has_prev(int t) const { return t > 0 || continues_; }
  template <class V>
  void set(poplar::VertexRef v, const char* field, V value) {
    graph_.setInitialValue(v[field], value);
  }
  /// Connects list-valued field `field` of v to one tensor per variable.
  void connect_each(poplar::VertexRef v, const char* field, const std::vector<Tensor>& tensors) {
    graph_.setFieldSize(v[field], tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) graph_.connect(v[field][i], tensors[i]);
  }
  /// Row (t, b) of each of a tile's state variables; at t = -1 the initial state's (continuing)
  /// or zeros.
  std::vector<Tensor> state_rows(const TileTensors& tile, int t, int b) const {
    std::vector<Tensor> out;
    const size_t n = tile.j1 - tile.j0;
    for (size_t k = 0; k < tile.state.size(); ++k)
      out.push_back(t >= 0       ? row(tile.state[k], t, b, B_, n)
                    : continues_ ? row(tile.initial[k], 0, b, B_, n)
                                 : tile.zeros);
    return out;
  }
  /// The neuron model's fields of a Forward or Backward vertex: its per-neuron parameters
  /// (connected tensors) and layer-wide settings.
  void set_model(poplar::VertexRef v, const LayerConfig& c, const TileTensors& tile) {
    connect_each(v, "neuron", tile.neuron);
    set(v, "neuron_model", static_cast<unsigned>(c.neuron));
    set(v, "reset", static_cast<unsigned>(c.reset));
    set(v, "reset_grad", static_cast<unsigned>(c.reset_grad));
    set(v, "surrogate", static_cast<unsigned>(c.surrogate));
    set(v, "readout", static_cast<unsigned>(c.kind == LayerKind::readout));
    set(v, "gain", c.gain);
    set(v, "theta2", c.theta2);
    set(v, "beta", c.beta);
  }

  void build_forward(prog::Sequence& seq) {
    for (int t = 0; t < T_; ++t)
      for (size_t l = 0; l < config_.layers.size(); ++l) {
        const LayerConfig& c = config_.layers[l];
        LayerTensors& L = layers_[l];
        const bool readout = c.kind == LayerKind::readout;
        const int delay = config_.coupling == Coupling::delayed && l > 0 ? 1 : 0, t_in = t - delay;
        const size_t below = l == 0 ? static_cast<size_t>(-1) : l - 1;
        auto cs = graph_.addComputeSet("forward " + std::to_string(l) + " " + std::to_string(t));
        for (TileTensors& tile : L.tiles) {
          const size_t n = tile.j1 - tile.j0;
          for (int b = 0; b < B_; ++b) {
            auto v = graph_.addVertex(
                cs, "Forward",
                {{"weight", tile.w},
                 {"weight_rec", tile.w_rec},
                 {"in_list", list_at(below, t_in, b)},
                 {"own_prev", readout ? list_at(below, 0, b) : list_at(l, t - 1, b)},
                 {"bias", tile.bias},
                 {"flags", tile.flags.slice(b * (2 + 2 * n), (b + 1) * (2 + 2 * n))},
                 {"footprint", tile.footprint.slice(b * n, (b + 1) * n)}});
            connect_each(v, "state_prev", state_rows(tile, t - 1, b));
            connect_each(v, "state", state_rows(tile, t, b));
            graph_.setTileMapping(v, tile.tile);
            set(v, "n", static_cast<unsigned>(n));
            set(v, "j0", static_cast<unsigned>(tile.j0));
            set(v, "has_input", static_cast<unsigned>(t_in >= 0 || (continues_ && l > 0)));
            set(v, "has_prev", static_cast<unsigned>(has_prev(t)));
            set(v, "recurrent", static_cast<unsigned>(c.kind == LayerKind::recurrent_lif));
            set_model(v, c, tile);
            set(v, "use_bias", static_cast<unsigned>(c.bias));
          }
        }
        seq.add(prog::Execute(cs));
        if (readout) continue;
        auto select = graph_.addComputeSet("select " + std::to_string(l) + " " + std::to_string(t));
        const uint64_t layer_seed = kernels::layer_seed(config_.seed, l);
        for (int b = 0; b < B_; ++b) {
          auto v = graph_.addVertex(select, "Select");
          graph_.setTileMapping(v, L.list_tile);
          graph_.setFieldSize(v["flags"], L.tiles.size());
          for (size_t i = 0; i < L.tiles.size(); ++i) {
            const size_t n = L.tiles[i].j1 - L.tiles[i].j0;
            graph_.connect(v["flags"][i],
                           L.tiles[i].flags.slice(b * (2 + 2 * n), (b + 1) * (2 + 2 * n)));
          }
          graph_.connect(v["list"], list_at(l, t, b));
          graph_.connect(v["found"], L.found.slice(b * 2 * c.n_out, (b + 1) * 2 * c.n_out));
          graph_.connect(v["priority"], L.priority.slice(b * c.capacity, (b + 1) * c.capacity));
          graph_.connect(v["dropped"], L.dropped.slice(2 * b, 2 * b + 2));
          graph_.connect(v["step0"], step0_);
          set(v, "n_neurons", static_cast<unsigned>(c.n_out));
          set(v, "capacity", static_cast<unsigned>(c.capacity));
          set(v, "policy", static_cast<unsigned>(config_.overflow));
          set(v, "seed_lo", static_cast<unsigned>(layer_seed & 0xFFFFFFFFu));
          set(v, "seed_hi", static_cast<unsigned>(layer_seed >> 32));
          set(v, "t", static_cast<unsigned>(t));
          set(v, "b", static_cast<unsigned>(b));
        }
        seq.add(prog::Execute(select));
      }
  }

  /// Entry gradients of `list(t_list, b)` through `weight(tile)` and gI(t): lanes, then reduce.
  template <class W, class G>
  void entry_gradients(prog::Sequence& seq, const LayerTensors& L, W weight, size_t list_layer,
                       int t_list, int t, G grad, bool assign, unsigned reduce_tile,
                       const std::string& name) {
    auto lanes = graph_.addComputeSet("lanes " + name);
    auto reduce = graph_.addComputeSet("reduce " + name);
    for (int b = 0; b < B_; ++b) {
      for (const TileTensors& tile : L.tiles) {
        const size_t n = tile.j1 - tile.j0, width = tile.lanes.numElements() / B_;
        auto v = graph_.addVertex(lanes, "EntryLanes",
                                  {{"weight", weight(tile)},
                                   {"list", list_at(list_layer, t_list, b)},
                                   {"gi", row(tile.gi, t, b, B_, n)},
                                   {"lanes", tile.lanes.slice(b * width, (b + 1) * width)}});
        graph_.setTileMapping(v, tile.tile);
        set(v, "n", static_cast<unsigned>(n));
        set(v, "j0", static_cast<unsigned>(tile.j0));
      }
      auto v = graph_.addVertex(reduce, "EntryReduce");
      graph_.setTileMapping(v, reduce_tile);
      graph_.setFieldSize(v["lanes"], L.tiles.size());
      for (size_t i = 0; i < L.tiles.size(); ++i) {
        const size_t width = L.tiles[i].lanes.numElements() / B_;
        graph_.connect(v["lanes"][i], L.tiles[i].lanes.slice(b * width, (b + 1) * width));
      }
      graph_.connect(v["list"], list_at(list_layer, t_list, b));
      graph_.connect(v["grad"], grad(b));
      set(v, "assign", static_cast<unsigned>(assign));
    }
    seq.add(prog::Execute(lanes));
    seq.add(prog::Execute(reduce));
  }

  void build_backward(prog::Sequence& seq) {
    for (size_t l = config_.layers.size(); l-- > 0;) {
      const LayerConfig& c = config_.layers[l];
      LayerTensors& L = layers_[l];
      const bool readout = c.kind == LayerKind::readout,
                 recurrent = c.kind == LayerKind::recurrent_lif;
      const int delay = config_.coupling == Coupling::delayed && l > 0 ? 1 : 0;
      const size_t below = l == 0 ? static_cast<size_t>(-1) : l - 1;
      for (TileTensors& tile : L.tiles) {
        for (Tensor* x : {&tile.dw, &tile.dw_rec, &tile.dbias, &tile.sums})
          seq.add(prog::Copy(zeros(poplar::FLOAT, x->numElements(), tile.tile), *x));
        for (Tensor& x : tile.adjoint)
          seq.add(prog::Copy(zeros(poplar::FLOAT, x.numElements(), tile.tile), x));
      }
      for (int t = T_ - 1; t >= 0; --t) {
        auto cs = graph_.addComputeSet("backward " + std::to_string(l) + " " + std::to_string(t));
        size_t offset = 0;
        for (TileTensors& tile : L.tiles) {
          const size_t n = tile.j1 - tile.j0;
          for (int b = 0; b < B_; ++b) {
            const Tensor entries = readout ? L.grad_rows.slice(offset + (t * B_ + b) * n,
                                                               offset + (t * B_ + b + 1) * n)
                                           : row(L.grad_entries, t, b, B_, c.capacity);
            auto v = graph_.addVertex(
                cs, "Backward",
                {{"list", readout ? list_at(below, t, b) : list_at(l, t, b)},
                 {"grad_entries", entries},
                 {"grad_rec",
                  recurrent ? L.grad_rec.slice(b * c.capacity, (b + 1) * c.capacity) : tile.zeros},
                 {"gi", row(tile.gi, t, b, B_, n)},
                 {"list_prev", readout ? list_at(below, 0, b) : list_at(l, t - 1, b)},
                 {"footprint", tile.footprint.slice(b * n, (b + 1) * n)}});
            std::vector<Tensor> adjoints, sums;
            for (const Tensor& x : tile.adjoint) adjoints.push_back(x.slice(b * n, (b + 1) * n));
            for (size_t k = 0; k < tile.sums.numElements() / (B_ * n); ++k)
              sums.push_back(row(tile.sums, static_cast<int>(k), b, B_, n));
            connect_each(v, "adjoints", adjoints);
            connect_each(v, "state", state_rows(tile, t, b));
            connect_each(v, "state_prev", state_rows(tile, t - 1, b));
            connect_each(v, "sums", sums);
            graph_.setTileMapping(v, tile.tile);
            set(v, "n", static_cast<unsigned>(n));
            set(v, "j0", static_cast<unsigned>(tile.j0));
            set(v, "no_prev", static_cast<unsigned>(!has_prev(t)));
            set(v, "last_step", static_cast<unsigned>(t == T_ - 1));
            set(v, "recurrent", static_cast<unsigned>(recurrent));
            set_model(v, c, tile);
          }
          offset += tile.gi.numElements();
        }
        seq.add(prog::Execute(cs));
        if (recurrent && t > 0)
          entry_gradients(
              seq, L, [](const TileTensors& x) { return x.w_rec; }, l, t - 1, t,
              [&](int b) { return L.grad_rec.slice(b * c.capacity, (b + 1) * c.capacity); }, true,
              L.list_tile, "rec " + std::to_string(l));
      }
      const Tensor& grad_below = l == 0 ? grad_input_ : layers_[below].grad_entries;
      const int k_below = l == 0 ? k_in_ : config_.layers[below].capacity;
      const unsigned below_tile = l == 0 ? 0 : layers_[below].list_tile;
      for (int t = delay; t < T_; ++t)
        entry_gradients(
            seq, L, [](const TileTensors& x) { return x.w; }, below, t - delay, t,
            [&](int b) { return row(grad_below, t - delay, b, B_, k_below); }, false, below_tile,
            "in " + std::to_string(l));
      auto dw = graph_.addComputeSet("weight gradients " + std::to_string(l));
      const unsigned workers = graph_.getTarget().getNumWorkerContexts();
      for (TileTensors& tile : L.tiles) {
        const size_t n = tile.j1 - tile.j0;
        for (int rec = 0; rec <= static_cast<int>(recurrent); ++rec) {
          const unsigned rows = rec ? c.n_out : c.n_in;
          for (unsigned w = 0; w < workers; ++w) {  // each worker owns a row range of dW
            const unsigned row0 = rows * w / workers, row1 = rows * (w + 1) / workers;
            if (row0 == row1) continue;
            const Tensor& grad = rec ? tile.dw_rec : tile.dw;
            // continuing, the spikes of step -1 feed step 0 (through W_rec, or delayed coupling)
            const int delay_of_lists = rec ? 1 : delay;
            const bool before = continues_ && delay_of_lists > 0;
            const Tensor& fed = rec ? L.list : (l == 0 ? input_ : layers_[below].list);
            const Tensor& fed_with_before =
                rec ? L.with_before : (l == 0 ? input_ : layers_[below].with_before);
            auto v = graph_.addVertex(dw, "WeightGrad",
                                      {{"lists", before ? fed_with_before : fed},
                                       {"gi", tile.gi},
                                       {"dw", grad.slice(row0 * n, row1 * n)}});
            graph_.setTileMapping(v, tile.tile);
            set(v, "n", static_cast<unsigned>(n));
            set(v, "steps", static_cast<unsigned>(T_));
            set(v, "batch", static_cast<unsigned>(B_));
            set(v, "width", static_cast<unsigned>(2 + (rec ? c.capacity : k_below)));
            set(v, "delay", static_cast<unsigned>(delay_of_lists));
            set(v, "before", static_cast<unsigned>(before));
            set(v, "row0", row0);
            set(v, "row1", row1);
          }
        }
        if (c.bias) {
          auto v = graph_.addVertex(dw, "BiasGrad", {{"gi", tile.gi}, {"dbias", tile.dbias}});
          graph_.setTileMapping(v, tile.tile);
          set(v, "n", static_cast<unsigned>(n));
          set(v, "rows", static_cast<unsigned>(T_ * B_));
        }
      }
      seq.add(prog::Execute(dw));
    }
  }

  const StackConfig& config_;
  const ipu::Plan& plan_;
  int T_, B_, k_in_;
  bool continues_;  ///< the engine continues a sequence from an initial state
  poplar::Graph graph_;
  Tensor input_, grad_input_, step0_;
  std::vector<LayerTensors> layers_;
  prog::Sequence forward_, train_;
  std::map<std::string, std::pair<poplar::DataStream, Tensor>> streams_;
};

/// Forward state of the ipu device: what backward needs to run the training program again.
class PoplarContext : public StackContext {
 public:
  std::vector<LayerParams> params;
  SpikeTensor input;
  /// A copy of the state the forward continued from (null: from rest); backward reads it too.
  std::unique_ptr<const StackState> initial;
  Compiled* compiled = nullptr;
  ipu::Plan plan;
};

class PoplarBackend final : public Backend {
 public:
  std::string name() const override { return "ipu"; }
  bool learns_neuron_parameters() const override { return true; }
  bool continues_state() const override { return true; }

  std::shared_ptr<StackContext> lif_stack_forward(const StackConfig& config,
                                                  const std::vector<LayerParams>& params,
                                                  const SpikeView& input,
                                                  const StackState* initial) override {
    check(config.mode == Mode::sparse, "lif_stack_forward", "ipu runs the sparse method only");
    auto ctx = std::make_shared<PoplarContext>();
    ctx->config = config;
    ctx->params = params;
    ctx->T = input.T;
    ctx->B = input.B;
    ctx->input = SpikeTensor::from_view(input);
    if (initial != nullptr) ctx->initial = std::make_unique<const StackState>(*initial);
    ipu::PlanOptions options;
    options.T = input.T;
    options.B = input.B;
    options.input_capacity = input.K;
    const poplar::Target& target = device().getTarget();
    ipu::Target t;
    t.ipus = static_cast<int>(target.getNumIPUs());
    t.tiles_per_ipu = static_cast<int>(target.getTilesPerIPU());
    t.workers_per_tile = static_cast<int>(target.getNumWorkerContexts());
    t.bytes_per_tile = static_cast<int64_t>(target.getBytesPerTile());
    StackConfig stored = config;  // the graph keeps every step's membranes
    stored.recompute_segment = 0;
    ctx->plan = ipu::plan_stack(stored, options, t);
    ctx->compiled = engine_for(config, ctx->plan, input.T, input.B, input.K, initial != nullptr);
    std::lock_guard<std::mutex> lock(device_mutex_);
    fill_inputs(*ctx);
    run(*ctx->compiled, 0);
    read_outputs(*ctx);
    return ctx;
  }

  void lif_stack_backward(StackContext& context, const std::vector<const float*>& grad_outputs,
                          const std::vector<LayerGrads>& grads, float* grad_input) override {
    auto& ctx = dynamic_cast<PoplarContext&>(context);
    Compiled& c = *ctx.compiled;
    std::lock_guard<std::mutex> lock(device_mutex_);
    fill_inputs(ctx);
    const int64_t lists = static_cast<int64_t>(ctx.T) * ctx.B;
    for (size_t l = 0; l < ctx.config.layers.size(); ++l) {
      const LayerConfig& layer = ctx.config.layers[l];
      std::vector<float>& g = c.floats["g" + std::to_string(l)];
      if (layer.kind == LayerKind::readout)
        to_tiles(ctx, l, grad_outputs[l], static_cast<int>(lists), g);  // null: zeros
      else if (grad_outputs[l] != nullptr)
        std::copy_n(grad_outputs[l], lists * layer.capacity, g.begin());
      else
        std::fill(g.begin(), g.end(), 0.0f);
    }
    run(c, 1);
    for (size_t l = 0; l < ctx.config.layers.size(); ++l) {
      const LayerConfig& layer = ctx.config.layers[l];
      const std::string id = std::to_string(l);
      add_columns(ctx, l, c.floats["dw" + id], layer.n_in, grads[l].weight);
      if (layer.kind == LayerKind::recurrent_lif)
        add_columns(ctx, l, c.floats["dwr" + id], layer.n_out, grads[l].weight_rec);
      if (layer.bias) add_columns(ctx, l, c.floats["db" + id], 1, grads[l].bias);
      // the model's per-sample sums [sums(), B, N] gathered from the tiles, reduced as on every
      // backend
      if (common::learns(grads[l])) {
        const common::Model model = common::layer_model(layer, ctx.params[l]);
        const int B = ctx.B, N = layer.n_out, sums = model.sums();
        std::vector<float> partial(static_cast<size_t>(sums) * B * N, 0.0f);
        add_columns(ctx, l, c.floats["sums" + id], sums * B, partial.data());
        common::add_parameter_grads(model, partial.data(), B, N, grads[l]);
      }
    }
    if (grad_input != nullptr)
      std::copy_n(c.floats["grad_input"].data(), lists * ctx.input.K(), grad_input);
  }

 private:
  /// Runs program `program` of c, loading c on the device first when another engine is loaded
  /// (loading one engine displaces the last: a continued sequence alternates two). Callers hold
  /// device_mutex_.
  void run(Compiled& c, unsigned program) {
    if (loaded_ != &c) {
      c.engine->load(device());
      loaded_ = &c;
    }
    c.engine->run(program);
  }

  Compiled* engine_for(const StackConfig& config, const ipu::Plan& plan, int T, int B, int k_in,
                       bool continues) {
    std::ostringstream key;  // every setting the graph bakes in, floats exactly
    key << std::hexfloat;
    key << T << ' ' << B << ' ' << k_in << ' ' << static_cast<int>(config.coupling) << ' '
        << static_cast<int>(config.overflow) << ' ' << config.seed << ' ' << continues;
    for (const LayerConfig& c : config.layers)
      key << " | " << static_cast<int>(c.kind) << ' ' << c.n_in << ' ' << c.n_out << ' '
          << c.capacity << ' ' << c.theta2 << ' ' << c.gain << ' ' << static_cast<int>(c.surrogate)
          << ' ' << c.beta << ' ' << static_cast<int>(c.reset) << ' '
          << static_cast<int>(c.reset_grad) << ' ' << c.bias << ' ' << static_cast<int>(c.neuron);
    std::lock_guard<std::mutex> lock(mutex_);
    auto& slot = engines_[key.str()];
    if (!slot)  // the plan has no recompute
      slot = Emitter(config, plan, T, B, k_in, continues).compile();
    return slot.get();
  }

  /// Calls f(index in the tile-major buffer, row r, neuron j) for rows r < `rows` of layer l's
  /// [rows, N] host matrix: tiles in order, each holding its columns [rows, n].
  template <class F>
  static void tile_major(const PoplarContext& ctx, size_t l, int64_t rows, F&& f) {
    const ipu::LayerPlacement& p = ctx.plan.layers[l];
    int64_t at = 0;
    for (int i = 0; i < p.tiles; ++i) {
      const ipu::Plan::TileSlice s = ctx.plan.tile(p.first_tile + i);
      for (int64_t r = 0; r < rows; ++r)
        for (int j = s.begin; j < s.end; ++j) f(at++, r * ctx.config.layers[l].n_out + j);
    }
  }
  static void to_tiles(const PoplarContext& ctx, size_t l, const float* m, int rows,
                       std::vector<float>& out) {
    tile_major(ctx, l, rows, [&](int64_t at, int64_t i) { out[at] = m != nullptr ? m[i] : 0.0f; });
  }
  static void add_columns(const PoplarContext& ctx, size_t l, const std::vector<float>& tiles,
                          int rows, float* m) {
    if (m != nullptr) tile_major(ctx, l, rows, [&](int64_t at, int64_t i) { m[i] += tiles[at]; });
  }

  static void fill_inputs(PoplarContext& ctx) {
    Compiled& c = *ctx.compiled;
    const SpikeView in = ctx.input.view();
    std::vector<int>& lists = c.ints["input"];
    for (int64_t r = 0; r < static_cast<int64_t>(in.T) * in.B; ++r)
      pack_list(lists.data() + r * (2 + in.K), in.n_spk[r], in.n_tot[r], in.ids + r * in.K);
    for (size_t l = 0; l < ctx.config.layers.size(); ++l) {
      const LayerConfig& layer = ctx.config.layers[l];
      const LayerParams& p = ctx.params[l];
      const std::string id = std::to_string(l);
      to_tiles(ctx, l, p.weight, layer.n_in, c.floats["w" + id]);
      if (layer.kind == LayerKind::recurrent_lif)
        to_tiles(ctx, l, p.weight_rec, layer.n_out, c.floats["wr" + id]);
      const kernels::neurons::Params<const float> neuron = common::neuron_params(p);
      for (int i = 0; i < common::layer_model(layer, neuron).param_count(); ++i)  // zeros where
        to_tiles(ctx, l, neuron[i], 1, c.floats[param_stream(l, i)]);  // none (a readout's theta1)
      to_tiles(ctx, l, p.bias, 1, c.floats["bias" + id]);
    }
    const auto steps = static_cast<uint64_t>(ctx.initial != nullptr ? ctx.initial->steps : 0);
    std::vector<int>& step0 = c.ints["step0"];  // written in place: the engine holds its data()
    step0[0] = static_cast<int>(steps & 0xFFFFFFFFU);
    step0[1] = static_cast<int>(steps >> 32);
    if (ctx.initial == nullptr) return;
    for (size_t l = 0; l < ctx.config.layers.size(); ++l) {
      const LayerConfig& layer = ctx.config.layers[l];
      const LayerState& s = ctx.initial->layers[l];
      const int64_t row = static_cast<int64_t>(in.B) * layer.n_out;
      for (int64_t k = 0; k < static_cast<int64_t>(s.states.size()) / row; ++k)
        to_tiles(ctx, l, s.states.data() + k * row, in.B, c.floats[state_stream("init", l, k)]);
      if (layer.kind == LayerKind::readout) continue;
      std::vector<int>& before = c.ints["before" + std::to_string(l)];
      const SpikeView last = s.spikes.view();  // one step
      for (int b = 0; b < in.B; ++b)           // step -1 is read for its spikes only (at most K)
        pack_list(before.data() + static_cast<int64_t>(b) * (2 + layer.capacity), last.n_spk[b],
                  last.n_spk[b], last.ids + static_cast<int64_t>(b) * last.K);
    }
  }

  static void read_outputs(PoplarContext& ctx) {
    Compiled& c = *ctx.compiled;
    const int T = ctx.T, B = ctx.B;
    for (size_t l = 0; l < ctx.config.layers.size(); ++l) {
      const LayerConfig& layer = ctx.config.layers[l];
      const std::string id = std::to_string(l);
      if (layer.kind == LayerKind::readout) {
        ctx.readout.assign(static_cast<size_t>(T) * B * layer.n_out, 0.0f);
        const std::vector<float>& v = c.floats["v" + id];
        tile_major(ctx, l, static_cast<int64_t>(T) * B,
                   [&](int64_t at, int64_t i) { ctx.readout[i] = v[at]; });
        continue;
      }
      SpikeTensor& s = ctx.spikes.emplace_back(T, B, layer.capacity, layer.n_out);
      const std::vector<int>& lists = c.ints["list" + id];
      for (int t = 0; t < T; ++t)
        for (int b = 0; b < B; ++b) {
          const int* list = lists.data() + (static_cast<int64_t>(t) * B + b) * (2 + layer.capacity);
          s.n_spk(t, b) = list[0];
          s.n_tot(t, b) = list[1];
          std::copy_n(list + 2, list[1], s.list(t, b));
        }
      Drops dropped;  // [B, 2]: spikes and candidates
      const std::vector<int>& drops = c.ints["dropped" + id];
      for (size_t i = 0; i < drops.size(); i += 2) dropped += {drops[i], drops[i + 1]};
      ctx.add_dropped(dropped);
    }
    for (size_t l = 0; l < ctx.config.layers.size(); ++l) {  // the states of step T - 1
      const int64_t row = static_cast<int64_t>(B) * ctx.config.layers[l].n_out;
      const int states = common::layer_model(ctx.config.layers[l], ctx.params[l]).states();
      std::vector<float>& last = ctx.last_states.emplace_back(states * row);
      for (int k = 0; k < states; ++k) {
        const std::vector<float>& tiles = c.floats[state_stream("last", l, k)];
        tile_major(ctx, l, B, [&](int64_t at, int64_t i) { last[k * row + i] = tiles[at]; });
      }
    }
  }

  std::mutex mutex_;  ///< guards engines_
  std::map<std::string, std::unique_ptr<Compiled>> engines_;
  /// One run on the device at a time (fill the buffers, run, read them), and the engine loaded.
  std::mutex device_mutex_;
  Compiled* loaded_ = nullptr;
};

}  // namespace

bool poplar_backend_built() { return true; }

bool ipu_device_present() {
  try {
    device();
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

Backend& poplar_backend() {
  static PoplarBackend backend;
  device();  // throws Error when no IPU can be attached
  return backend;
}

}  // namespace saltatory
