// The CPU stack driver: layer l consumes layer l-1's lists (same step, or t-1 when delayed);
// backward runs the layers top-down, each turning gradients of its output entries into gradients
// of its input entries. Sparse mode runs time in windows: the whole sequence when the neuron
// model's states are stored, or recompute segments of S steps (checkpointing in time). Then the
// forward keeps the lists, the states at the end of each window and the membrane at every list
// entry; backward reads only those entries when they are all it needs (no learnable neuron
// parameter, and a carry that reads no state), and otherwise recomputes each window's states from
// the lists and the states kept at the end of the window before. Also the
// per-row calls of the neuron model shared by both modes (kernels/neurons/model.hpp): the update
// and selection, the adjoints' carry and the parameter sums, each with the footprint of the
// emitted spikes it reads.
#include "backends/cpu/cpu_backend.hpp"

#include <algorithm>

#include "backends/common/top_down.hpp"
#include "saltatory/core/error.hpp"
#include "saltatory/kernels/neurons/model.hpp"
#include "saltatory/kernels/select.hpp"
#include "saltatory/kernels/sparse.hpp"

namespace saltatory::cpu {

namespace {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  bool learns_neuron_parameters() const override { return true; }
  bool continues_state() const override { return true; }

  std::shared_ptr<StackContext> lif_stack_forward(const StackConfig& config,
                                                  const std::vector<LayerParams>& params,
                                                  const SpikeView& input,
                                                  const StackState* initial) override {
    auto ctx = std::make_shared<CpuContext>();
    ctx->config = config;
    ctx->params = params;
    ctx->T = input.T;
    ctx->B = input.B;
    ctx->input = SpikeTensor::from_view(input);
    ctx->window = common::window_steps(config, input.T, input.B);
    if (initial != nullptr) ctx->initial = std::make_unique<const StackState>(*initial);
    ctx->first_step = initial != nullptr ? initial->steps : 0;
    const bool dense = config.mode == Mode::dense;
    for (size_t l = 0; l < config.layers.size(); ++l) {
      const LayerConfig& c = config.layers[l];
      const int64_t row = static_cast<int64_t>(ctx->B) * c.n_out, steps = ctx->T * row;
      const bool readout = c.kind == LayerKind::readout;
      const int states = common::layer_model(c, params[l]).states();
      if (!readout)
        ctx->spikes.emplace_back(input.T, input.B, dense ? c.n_out : c.capacity, c.n_out);
      Drops dropped;
      ctx->listed.emplace_back();
      if (!recomputes(*ctx, l)) {
        ctx->state.push_back(acquire_buffer(states * steps));
        const LayerRun run = layer_run(*ctx, l, ctx->state.back().get(), steps, 0);
        dropped = dense ? dense_forward(run) : sparse_forward(run, {0, ctx->T}, true);
        keep_last_states(*ctx, run);
      } else {  // window by window, keeping the states at the end of every window but the last,
                // and the membrane at every list entry
        const int64_t kept = (windows(*ctx) - 1) * row;
        ctx->state.push_back(acquire_buffer(states * kept));
        if (!common::layer_model(c, params[l]).carry_reads_states())  // else never read
          ctx->listed.back() = acquire_buffer(static_cast<int64_t>(ctx->T) * ctx->B * c.capacity);
        const Buffer buffer = acquire_buffer(states * (ctx->window + 1) * row);
        for (int k = 0; k < windows(*ctx); ++k) {
          LayerRun run = window_run(*ctx, l, buffer.get(), k);
          run.listed = ctx->listed.back().get();
          const Window w = window(*ctx, k);
          dropped += sparse_forward(run, w, true);
          if (k + 1 < windows(*ctx))
            for (int i = 0; i < states; ++i)
              std::copy_n(run.states(w.t1 - 1, 0)[i], row,
                          ctx->state[l].get() + i * kept + k * row);
          else
            keep_last_states(*ctx, run);
        }
      }
      if (readout)  // the output is the readout's V
        ctx->readout.assign(ctx->state[l].get(), ctx->state[l].get() + steps);
      else
        ctx->add_dropped(dropped);
    }
    return ctx;
  }

  void lif_stack_backward(StackContext& context, const std::vector<const float*>& grad_outputs,
                          const std::vector<LayerGrads>& grads, float* grad_input) override {
    auto& ctx = dynamic_cast<CpuContext&>(context);
    common::backward_top_down(
        ctx, grad_outputs, grad_input, ctx.input.K(),
        [&](size_t l, const float* grad_out, float* below) {
          const LayerConfig& c = ctx.config.layers[l];
          const bool readout = c.kind == LayerKind::readout;
          const int64_t row = static_cast<int64_t>(ctx.B) * c.n_out;
          float* stored = ctx.state[l].get();
          if (ctx.config.mode == Mode::dense) {
            dense_backward(layer_run(ctx, l, stored, ctx.T * row, 0), grad_out, grads[l], below);
            return;
          }
          // window by window, latest first. States that were not kept are recomputed, unless
          // backward needs only the membrane at the list entries: no learnable parameter, and the
          // entries were kept (a carry that reads no state, kernels/neurons/model.hpp).
          const LayerGrads& g = grads[l];
          const kernels::neurons::Model model = common::layer_model(c, ctx.params[l]);
          const bool learns = common::learns(g);
          BackwardCarry carry(model, row, readout ? 0 : ctx.B * ctx.spikes[l].K(), learns);
          const Buffer grad_current = acquire_buffer(ctx.window * row);
          const bool from_listed = ctx.listed[l] && !learns;
          const Buffer buffer = recomputes(ctx, l) && !from_listed
                                    ? acquire_buffer(model.states() * (ctx.window + 1) * row)
                                    : Buffer();
          for (int k = windows(ctx); k-- > 0;) {
            const Window w = window(ctx, k);
            LayerRun run = buffer
                               ? window_run(ctx, l, buffer.get(), k)
                               : layer_run(ctx, l, from_listed ? nullptr : stored, ctx.T * row, 0);
            if (from_listed) run.listed = ctx.listed[l].get();
            if (buffer) sparse_forward(run, w, false);
            sparse_backward(run, w, grad_out, grads[l], below, carry, grad_current.get());
          }
          if (!carry.sums.empty())
            common::add_parameter_grads(model, carry.sums.data(), ctx.B, c.n_out, g);
        });
  }

 private:
  static int windows(const CpuContext& ctx) { return (ctx.T + ctx.window - 1) / ctx.window; }
  static Window window(const CpuContext& ctx, int k) {
    return {k * ctx.window, std::min(ctx.T, (k + 1) * ctx.window)};
  }
  /// Whether layer l's states are recomputed in backward rather than stored.
  static bool recomputes(const CpuContext& ctx, size_t l) {
    return ctx.window < ctx.T && ctx.config.layers[l].kind != LayerKind::readout;
  }

  // Spiking layers precede the readout, so layer l's lists are spikes[l].
  static LayerRun layer_run(CpuContext& ctx, size_t l, float* state, int64_t stride,
                            int first_step) {
    const bool delayed = ctx.config.coupling == Coupling::delayed && l > 0;
    const bool readout = ctx.config.layers[l].kind == LayerKind::readout;
    LayerRun run{ctx.config.layers[l],
                 ctx.params[l],
                 l == 0 ? ctx.input.view() : ctx.spikes[l - 1].view(),
                 delayed ? 1 : 0,
                 readout ? nullptr : &ctx.spikes[l],
                 state,
                 stride,
                 first_step,
                 kernels::layer_seed(ctx.config.seed, l),
                 ctx.config.overflow,
                 ctx.T,
                 ctx.B};
    if (ctx.initial != nullptr) {
      run.initial = &ctx.initial->layers[l];
      if (delayed) run.input_before = ctx.initial->layers[l - 1].spikes.view();
      run.steps_before = ctx.initial->steps;
    }
    return run;
  }

  /// The states of the last step of `run` (whose buffer holds step T - 1) into last_states.
  static void keep_last_states(CpuContext& ctx, const LayerRun& run) {
    const int64_t row = static_cast<int64_t>(ctx.B) * run.config.n_out;
    const kernels::neurons::Rows last = run.states(ctx.T - 1, 0);
    std::vector<float>& out = ctx.last_states.emplace_back(run.model().states() * row);
    for (int i = 0; i < run.model().states(); ++i) std::copy_n(last[i], row, out.data() + i * row);
  }

  /// Layer l over window k in `buffer` (the states of window + 1 steps): its first step holds the
  /// states of t0 - 1, loaded from those kept.
  static LayerRun window_run(CpuContext& ctx, size_t l, float* buffer, int k) {
    const int64_t row = static_cast<int64_t>(ctx.B) * ctx.config.layers[l].n_out,
                  kept = (windows(ctx) - 1) * row, stride = (ctx.window + 1) * row;
    const int states = common::layer_model(ctx.config.layers[l], ctx.params[l]).states();
    LayerRun run = layer_run(ctx, l, buffer, stride, k * ctx.window - 1);
    if (k > 0)
      for (int i = 0; i < states; ++i)
        std::copy_n(ctx.state[l].get() + i * kept + (k - 1) * row, row, buffer + i * stride);
    else if (run.initial != nullptr)
      for (int i = 0; i < states; ++i)
        std::copy_n(run.initial->states.data() + i * row, row, buffer + i * stride);
    return run;
  }
};

}  // namespace

namespace {

/// Calls f() with the footprint of S[step] (1 at emitted neurons; step -1: the initial state's) in
/// `flags` when `needed`, and leaves `flags` zero again: how the spike reset reads which spikes
/// were emitted.
template <class F>
void with_footprint(const LayerRun& run, int step, int b, float* flags, bool needed, F&& f) {
  const common::SpikeHistory own = needed ? run.own_history() : common::SpikeHistory{};
  if (needed) kernels::scatter_value(flags, own.list(step, b), own.spikes(step, b), 1.0f);
  f();
  if (needed) kernels::scatter_value(flags, own.list(step, b), own.spikes(step, b), 0.0f);
}

}  // namespace

Drops update_and_select(const LayerRun& run, int t, int b, const float* current,
                        SelectScratch& scratch, bool select) {
  const kernels::neurons::Model m = run.model();
  const int n = run.config.n_out;
  float* v = run.v(t, b);
  float* flags = scratch.flags.data();
  with_footprint(run, t - 1, b, flags, run.has_prev(t) && m.update_reads_emitted(), [&] {
    kernels::neurons::update_row(kernels::SerialBlock{}, m, run.states(t, b),
                                 run.has_prev(t) ? run.states(t - 1, b) : kernels::neurons::Rows{},
                                 flags, current, n);
  });
  if (m.readout() || !select) return {};
  SpikeTensor& out = *run.output;
  const auto counts =
      kernels::select_two_threshold(v, n, m.theta1(), m.theta2(), out.K(), run.overflow,
                                    kernels::list_stream(run.seed, run.steps_before + t, b),
                                    out.list(t, b), scratch.found.data(), scratch.priority.data());
  out.n_spk(t, b) = counts.n_spk;
  out.n_tot(t, b) = counts.n_tot;
  if (run.listed != nullptr)
    kernels::gather_values(run.listed + (static_cast<int64_t>(t) * run.B + b) * out.K(), v,
                           out.list(t, b), counts.n_tot);
  return counts.dropped;
}

void carry_adjoints(const LayerRun& run, int t, int b, kernels::neurons::Rows g, float* flags) {
  const kernels::neurons::Model m = run.model();  // r[t+1] of the spike reset: S[t] emitted
  with_footprint(run, t, b, flags, m.carry_reads_emitted(), [&] {
    kernels::neurons::carry_row(kernels::SerialBlock{}, m, g, run.states(t, b), flags,
                                run.config.n_out);
  });
}

void parameter_sums(const LayerRun& run, int t, int b, kernels::neurons::Rows sums,
                    kernels::neurons::Rows g, float* flags) {
  const kernels::neurons::Model m = run.model();  // r[t] of the spike reset: S[t-1] emitted
  with_footprint(run, t - 1, b, flags, run.has_prev(t) && m.update_reads_emitted(), [&] {
    kernels::neurons::parameter_grad_row(
        kernels::SerialBlock{}, m, sums, g,
        run.has_prev(t) ? run.states(t - 1, b) : kernels::neurons::Rows{}, flags, run.states(t, b),
        run.config.n_out);
  });
}

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace saltatory::cpu
