// Bindings of the whole-sequence stack ops and the losses. Arrays are read and written in place;
// the GIL is released while C++ computes. Outputs are read-only numpy views into the forward
// context (backward reads the context, so Python must not change it).
#include <pybind11/stl.h>

#include <optional>

#include "bindings.hpp"
#include "options.hpp"
#include "saltatory/backend/registry.hpp"
#include "saltatory/core/error.hpp"
#include "saltatory/core/memory.hpp"
#include "saltatory/ipu/plan.hpp"
#include "saltatory/ops/lif_stack.hpp"
#include "saltatory/ops/losses.hpp"

namespace saltatory::python {

namespace {

/// A forward context plus the Python objects whose memory it borrows.
struct PyContext {
  std::shared_ptr<StackContext> context;
  py::list keep_alive;
};

/// A string property of LayerConfig over one of its enum fields.
template <class E>
void option_property(py::class_<LayerConfig>& c, const char* name, E LayerConfig::*field,
                     const Options<E>& options) {
  c.def_property(
      name, [=](const LayerConfig& self) { return name_of(self.*field, options); },
      [=](LayerConfig& self, const std::string& value) {
        self.*field = parse(value, "LayerConfig", name, options);
      });
}

const float* optional_floats(const py::handle& obj, const char* name,
                             std::vector<py::ssize_t> shape, py::list& keep_alive) {
  if (obj.is_none()) return nullptr;
  const py::array a = checked<float>(obj, "lif_stack_forward", name, std::move(shape));
  keep_alive.append(a);
  return static_cast<const float*>(a.data());
}

float* writable_floats(const py::handle& obj, const char* op, const char* name,
                       std::vector<py::ssize_t> shape) {
  if (obj.is_none()) return nullptr;
  py::array a = checked<float>(obj, op, name, std::move(shape), true);
  return static_cast<float*>(a.mutable_data());
}

/// A StackState from its Python form (steps, [(states [S, B, N] float32, spikes or None), ...]),
/// copied; the op layer checks that it fits the stack.
StackState state_from(const py::handle& obj) {
  const char* op = "lif_stack_forward";
  if (!py::isinstance<py::tuple>(obj) || py::len(obj) != 2)
    throw py::type_error("[lif_stack_forward] state must be a (steps, layers) tuple");
  const auto t = obj.cast<py::tuple>();
  StackState s;
  s.steps = integer<int64_t>(t[0], op, "state steps", 0);
  if (!py::isinstance<py::list>(t[1]))
    throw py::type_error("[lif_stack_forward] the state's layers must be a list");
  for (const py::handle layer : t[1].cast<py::list>()) {
    if (!py::isinstance<py::tuple>(layer) || py::len(layer) != 2)
      throw py::type_error("[lif_stack_forward] each layer of a state is a (states, spikes) tuple");
    const auto pair = layer.cast<py::tuple>();
    const py::array states = checked<float>(pair[0], op, "state", {-1, -1, -1});
    if (s.layers.empty()) s.B = extent(states.shape(1), op, "state (B)");  // the rest must agree
    LayerState& ls = s.layers.emplace_back();
    const auto* data = static_cast<const float*>(states.data());
    ls.states.assign(data, data + states.size());
    if (!pair[1].is_none()) {
      try {
        ls.spikes = SpikeTensor::from_view(spike_view(pair[1], op));
      } catch (const Error& e) {  // name this op, not the tensor's constructor
        throw py::value_error(std::string("[lif_stack_forward] the state's spikes: ") + e.what());
      }
    }
  }
  return s;
}

}  // namespace

void init_ops(py::module_& m) {
  m.def("option_names", [] {
    py::dict d;
    d["kind"] = names(kKinds);
    d["neuron"] = names(kNeurons);
    d["surrogate"] = names(kSurrogates);
    d["reset"] = names(kResets);
    d["reset_grad"] = names(kResetGrads);
    d["coupling"] = names(kCouplings);
    d["mode"] = names(kModes);
    d["overflow"] = names(kOverflows);
    std::vector<std::string> devices;
    for (const BackendEntry& entry : backend_registry()) devices.emplace_back(entry.name);
    d["device"] = devices;
    return d;
  });

  py::class_<LayerConfig> config(m, "LayerConfig");
  config.def(py::init<>())
      .def_readwrite("n_in", &LayerConfig::n_in)
      .def_readwrite("n_out", &LayerConfig::n_out)
      .def_readwrite("capacity", &LayerConfig::capacity)
      .def_readwrite("theta1", &LayerConfig::theta1)
      .def_readwrite("theta2", &LayerConfig::theta2)
      .def_readwrite("gain", &LayerConfig::gain)
      .def_readwrite("beta", &LayerConfig::beta)
      .def_readwrite("bias", &LayerConfig::bias);
  config.def_property_readonly("states", [](const LayerConfig& self) {
    return kernels::neurons::Model{self.neuron}.states();  // the neuron model's state variables
  });
  option_property(config, "kind", &LayerConfig::kind, kKinds);
  option_property(config, "neuron", &LayerConfig::neuron, kNeurons);
  option_property(config, "surrogate", &LayerConfig::surrogate, kSurrogates);
  option_property(config, "reset", &LayerConfig::reset, kResets);
  option_property(config, "reset_grad", &LayerConfig::reset_grad, kResetGrads);

  py::class_<PyContext>(m, "StackContext")
      .def_property_readonly("spikes",
                             [](py::object self) {
                               const auto& ctx = *self.cast<PyContext&>().context;
                               py::list out;
                               for (const SpikeTensor& s : ctx.spikes) {
                                 const SpikeView v = s.view();
                                 out.append(py::make_tuple(borrowed(v.ids, {v.T, v.B, v.K}, self),
                                                           borrowed(v.n_spk, {v.T, v.B}, self),
                                                           borrowed(v.n_tot, {v.T, v.B}, self), v.N,
                                                           s.dropped(), s.dropped_candidates()));
                               }
                               return out;
                             })
      .def_property_readonly("readout",
                             [](py::object self) -> py::object {
                               const auto& ctx = *self.cast<PyContext&>().context;
                               if (ctx.readout.empty()) return py::none();
                               const py::ssize_t n =
                                   static_cast<py::ssize_t>(ctx.readout.size()) / (ctx.T * ctx.B);
                               return borrowed(ctx.readout.data(), {ctx.T, ctx.B, n}, self);
                             })
      .def_property_readonly("input_shape",
                             [](const PyContext& c) {
                               return py::make_tuple(c.context->T, c.context->B,
                                                     c.context->input_capacity);
                             })
      .def_property_readonly("dropped", [](const PyContext& c) { return c.context->dropped; })
      .def_property_readonly("dropped_candidates",
                             [](const PyContext& c) { return c.context->dropped_candidates; })
      .def_property_readonly("ipu_report",
                             [](const PyContext& c) -> py::object {
                               const std::optional<ipu::RunReport> r = ipu::run_report(*c.context);
                               if (!r) return py::none();
                               py::dict d;
                               d["tiles_used"] = r->plan.tiles_used;
                               d["ipus_used"] = r->plan.ipus_used;
                               d["neurons_per_tile"] = r->plan.neurons_per_tile;
                               d["tile_bytes"] = r->tile_bytes;
                               d["exchange_bytes_forward"] = r->exchange_bytes_forward;
                               d["exchange_bytes_backward"] = r->exchange_bytes_backward;
                               d["compute_sets"] = r->compute_sets;
                               d["plan_summary"] = ipu::summary(r->plan);
                               d["fits"] = r->fits;
                               d["fit_error"] = r->fit_error;
                               return d;
                             })
      .def_property_readonly("backward_done",
                             [](const PyContext& c) { return c.context->backward_done.load(); })
      .def("stored_states",
           [](const PyContext& c, size_t l) -> py::object {
             // [S, T, B, N], or None where the backend keeps no states of every step
             const StackContext& ctx = *c.context;
             if (l >= ctx.config.layers.size()) throw py::index_error("no such layer");
             std::vector<float> states = ctx.stored_states(l);
             if (states.empty()) return py::none();
             const py::ssize_t n = ctx.config.layers[l].n_out,
                               count =
                                   static_cast<py::ssize_t>(states.size()) / (ctx.T * ctx.B * n);
             return owned(std::move(states), {count, ctx.T, ctx.B, n});
           })
      .def("final_state", [](const PyContext& c) {
        // (steps, [(states [S, B, N], (ids [1, B, K], n_spk [1, B], n_tot [1, B], N) or None)])
        StackState s = final_state(*c.context);
        py::list layers;
        for (size_t l = 0; l < s.layers.size(); ++l) {
          LayerState& ls = s.layers[l];
          const py::ssize_t n = c.context->config.layers[l].n_out,
                            count = static_cast<py::ssize_t>(ls.states.size()) / (s.B * n);
          py::object spikes = py::none();
          if (ls.spikes.T() > 0) {
            const py::ssize_t B = ls.spikes.B(), K = ls.spikes.K();
            spikes = py::make_tuple(owned(std::move(ls.spikes.ids()), {1, B, K}),
                                    owned(std::move(ls.spikes.n_spk()), {1, B}),
                                    owned(std::move(ls.spikes.n_tot()), {1, B}), ls.spikes.N());
          }
          layers.append(py::make_tuple(owned(std::move(ls.states), {count, s.B, n}), spikes));
        }
        return py::make_tuple(s.steps, layers);
      });

  m.def(
      "lif_stack_forward",
      [](const std::vector<LayerConfig>& layers, const py::list& params, const py::handle& input,
         const std::string& coupling, const std::string& mode, const std::string& overflow,
         const py::handle& seed, const std::string& device, const py::handle& recompute_segment,
         const py::handle& state) {
        const char* op = "lif_stack_forward";
        StackConfig config;
        config.layers = layers;
        config.coupling = parse(coupling, op, "coupling", kCouplings);
        config.mode = parse(mode, op, "mode", kModes);
        config.overflow = parse(overflow, op, "overflow", kOverflows);
        config.seed = integer<uint64_t>(seed, op, "seed");
        config.device = parse_device(device);
        config.recompute_segment = integer<int>(recompute_segment, op, "recompute_segment", 0);
        if (params.size() != layers.size())
          throw py::value_error("[lif_stack_forward] got parameters for " +
                                std::to_string(params.size()) + " layers, expected " +
                                std::to_string(layers.size()));
        PyContext result;
        std::vector<LayerParams> ps(layers.size());
        for (size_t l = 0; l < layers.size(); ++l) {
          // (weight, weight_rec, bias, alpha, theta1, alpha_syn, rho, b, a)
          const auto p = params[l].cast<py::tuple>();
          const py::ssize_t n_in = layers[l].n_in, n_out = layers[l].n_out;
          ps[l].weight = optional_floats(p[0], "weight", {n_in, n_out}, result.keep_alive);
          ps[l].weight_rec = optional_floats(p[1], "weight_rec", {n_out, n_out}, result.keep_alive);
          ps[l].bias = optional_floats(p[2], "bias", {n_out}, result.keep_alive);
          ps[l].alpha = optional_floats(p[3], "alpha", {n_out}, result.keep_alive);
          ps[l].theta1 = optional_floats(p[4], "theta1", {n_out}, result.keep_alive);
          ps[l].alpha_syn = optional_floats(p[5], "alpha_syn", {n_out}, result.keep_alive);
          ps[l].rho = optional_floats(p[6], "rho", {n_out}, result.keep_alive);
          ps[l].b = optional_floats(p[7], "b", {n_out}, result.keep_alive);
          ps[l].a = optional_floats(p[8], "a", {n_out}, result.keep_alive);
        }
        const SpikeView view = spike_view(input, op, &result.keep_alive);
        const std::optional<StackState> initial =
            state.is_none() ? std::nullopt : std::optional(state_from(state));
        {
          py::gil_scoped_release release;
          result.context = lif_stack_forward(config, ps, view, initial ? &*initial : nullptr);
        }
        return result;
      },
      py::arg("layers"), py::arg("params"), py::arg("input"), py::kw_only(), py::arg("coupling"),
      py::arg("mode"), py::arg("overflow"), py::arg("seed"), py::arg("device"),
      py::arg("recompute_segment"), py::arg("state") = py::none());

  m.def("lif_stack_backward", [](PyContext& ctx, const py::list& grad_outputs,
                                 const py::list& grads, const py::handle& grad_input) {
    const char* op = "lif_stack_backward";
    StackContext& c = *ctx.context;
    const auto& layers = c.config.layers;
    if (grad_outputs.size() != layers.size() || grads.size() != layers.size())
      throw py::value_error(
          "[lif_stack_backward] need one output gradient and one gradient tuple per layer (" +
          std::to_string(layers.size()) + ")");
    std::vector<const float*> g_out(layers.size());
    std::vector<LayerGrads> g(layers.size());
    for (size_t l = 0; l < layers.size(); ++l) {
      const py::ssize_t width =
          layers[l].kind == LayerKind::readout ? layers[l].n_out : c.spikes[l].K();
      g_out[l] =
          grad_outputs[l].is_none()
              ? nullptr
              : static_cast<const float*>(
                    checked<float>(grad_outputs[l], op, "grad_output", {c.T, c.B, width}).data());
      // (d_weight, d_weight_rec, d_bias, d_alpha, d_theta1, d_alpha_syn, d_rho, d_b, d_a)
      const auto t = grads[l].cast<py::tuple>();
      const py::ssize_t n_in = layers[l].n_in, n_out = layers[l].n_out;
      g[l].weight = writable_floats(t[0], op, "weight grad", {n_in, n_out});
      g[l].weight_rec = writable_floats(t[1], op, "weight_rec grad", {n_out, n_out});
      g[l].bias = writable_floats(t[2], op, "bias grad", {n_out});
      g[l].alpha = writable_floats(t[3], op, "alpha grad", {n_out});
      g[l].theta1 = writable_floats(t[4], op, "theta1 grad", {n_out});
      g[l].alpha_syn = writable_floats(t[5], op, "alpha_syn grad", {n_out});
      g[l].rho = writable_floats(t[6], op, "rho grad", {n_out});
      g[l].b = writable_floats(t[7], op, "b grad", {n_out});
      g[l].a = writable_floats(t[8], op, "a grad", {n_out});
    }
    float* g_in = writable_floats(grad_input, op, "grad_input", {c.T, c.B, c.input_capacity});
    py::gil_scoped_release release;
    lif_stack_backward(c, g_out, g, g_in);
  });

  m.def("spike_counts", [](const py::handle& spikes) {
    const SpikeView v = spike_view(spikes, "spike_counts");
    validate(v, "spike_counts");
    check_memory(4.0 * v.B * v.N, "spike_counts", "counts [B, N]");
    std::vector<float> counts(static_cast<size_t>(v.B) * v.N);
    spike_counts(v, counts.data());
    return owned(std::move(counts), {v.B, v.N});
  });
  m.def("spike_count_cross_entropy", [](const py::handle& spikes, const py::handle& labels) {
    const char* op = "spike_count_cross_entropy";
    const SpikeView v = spike_view(spikes, op);
    const py::array y = checked<int32_t>(labels, op, "labels", {v.B});
    std::vector<float> grad(static_cast<size_t>(v.T) * v.B * v.K);
    const float loss =
        spike_count_cross_entropy(v, static_cast<const int32_t*>(y.data()), grad.data());
    return py::make_tuple(loss, owned(std::move(grad), {v.T, v.B, v.K}));
  });
  m.def("membrane_cross_entropy", [](const py::handle& membrane, const py::handle& labels) {
    const char* op = "membrane_cross_entropy";
    const py::array v = checked<float>(membrane, op, "membrane", {-1, -1, -1});
    const int T = extent(v.shape(0), op, "membrane (T)"),
              B = extent(v.shape(1), op, "membrane (B)"),
              C = extent(v.shape(2), op, "membrane (C)");
    const py::array y = checked<int32_t>(labels, op, "labels", {B});
    std::vector<float> grad(static_cast<size_t>(T) * B * C);
    const float loss = membrane_cross_entropy(static_cast<const float*>(v.data()), T, B, C,
                                              static_cast<const int32_t*>(y.data()), grad.data());
    return py::make_tuple(loss, owned(std::move(grad), {T, B, C}));
  });
}

}  // namespace saltatory::python
