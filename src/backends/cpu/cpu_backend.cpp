// The CPU stack driver: layer l consumes layer l-1's lists (same step, or t-1 when delayed);
// backward runs the layers top-down, each turning gradients of its output entries into gradients
// of its input entries. Also the per-row LIF update and reset-gradient carry shared by both modes:
//   V[t] = alpha V[t-1] (1 - r[t]) + g (1 - alpha) I[t];  gV[t] = alpha m[t+1] gV[t+1] + ...
#include "backends/cpu/cpu_backend.hpp"

#include <algorithm>

#include "saltatory/core/error.hpp"
#include "saltatory/kernels/lif.hpp"
#include "saltatory/kernels/select.hpp"
#include "saltatory/kernels/sparse.hpp"

namespace saltatory::cpu {

namespace {

float* row(float* base, int t, int b, int B, int n) {
  return base + (static_cast<int64_t>(t) * B + b) * n;
}

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }

  std::shared_ptr<StackContext> lif_stack_forward(const StackConfig& config,
                                                  const std::vector<LayerParams>& params,
                                                  const SpikeView& input) override {
    auto ctx = std::make_shared<CpuContext>();
    ctx->config = config;
    ctx->params = params;
    ctx->T = input.T;
    ctx->B = input.B;
    ctx->input = SpikeTensor::from_view(input);
    const bool dense = config.mode == Mode::dense;
    for (size_t l = 0; l < config.layers.size(); ++l) {
      const LayerConfig& c = config.layers[l];
      const size_t size = static_cast<size_t>(input.T) * input.B * c.n_out;
      SpikeTensor* output = nullptr;
      float* membrane = nullptr;
      if (c.kind == LayerKind::readout) {
        ctx->readout.assign(size, 0.0f);
        membrane = ctx->readout.data();
      } else {
        ctx->spikes.emplace_back(input.T, input.B, dense ? c.n_out : c.capacity, c.n_out);
        ctx->membrane.push_back(acquire_buffer(size));
        output = &ctx->spikes.back();
        membrane = ctx->membrane.back().get();
      }
      const LayerRun run = layer_run(*ctx, l, output, membrane);
      const int64_t dropped = dense ? dense_forward(run) : sparse_forward(run);
      if (output != nullptr) {
        output->set_dropped(dropped);
        ctx->dropped.push_back(dropped);
      }
    }
    return ctx;
  }

  void lif_stack_backward(StackContext& context, const std::vector<const float*>& grad_outputs,
                          const std::vector<LayerGrads>& grads, float* grad_input) override {
    auto& ctx = dynamic_cast<CpuContext&>(context);
    const auto& layers = ctx.config.layers;
    const int64_t lists = static_cast<int64_t>(ctx.T) * ctx.B;
    // Output-entry gradient of the current layer: the caller's, plus what the layer above sent.
    std::vector<float> grad_out, grad_in;
    const auto width = [&](size_t l) {
      return layers[l].kind == LayerKind::readout ? layers[l].n_out : ctx.spikes[l].K();
    };
    grad_out.assign(lists * width(layers.size() - 1), 0.0f);
    if (grad_outputs.back() != nullptr)
      std::copy_n(grad_outputs.back(), grad_out.size(), grad_out.begin());
    for (size_t l = layers.size(); l-- > 0;) {
      float* below = nullptr;
      if (l > 0) {
        grad_in.assign(lists * width(l - 1), 0.0f);
        if (grad_outputs[l - 1] != nullptr)
          std::copy_n(grad_outputs[l - 1], grad_in.size(), grad_in.begin());
        below = grad_in.data();
      } else if (grad_input != nullptr) {
        std::fill_n(grad_input, lists * ctx.input.K(), 0.0f);
        below = grad_input;
      }
      const bool readout = layers[l].kind == LayerKind::readout;
      const LayerRun run = layer_run(ctx, l, readout ? nullptr : &ctx.spikes[l],
                                     readout ? ctx.readout.data() : ctx.membrane[l].get());
      if (ctx.config.mode == Mode::dense)
        dense_backward(run, grad_out.data(), grads[l], below);
      else
        sparse_backward(run, grad_out.data(), grads[l], below);
      std::swap(grad_out, grad_in);
    }
  }

 private:
  // Spiking layers precede the readout, so layer l's lists are spikes[l].
  static LayerRun layer_run(CpuContext& ctx, size_t l, SpikeTensor* output, float* membrane) {
    const bool delayed = ctx.config.coupling == Coupling::delayed && l > 0;
    return LayerRun{ctx.config.layers[l],
                    ctx.params[l],
                    l == 0 ? ctx.input.view() : ctx.spikes[l - 1].view(),
                    delayed ? 1 : 0,
                    output,
                    membrane,
                    kernels::stream_key(ctx.config.seed, l, 0x5E1EC7, 0),
                    ctx.config.overflow,
                    ctx.T,
                    ctx.B};
  }
};

}  // namespace

int update_and_select(const LayerRun& run, int t, int b, const float* current,
                      SelectScratch& scratch) {
  float* flags = scratch.flags.data();
  const LayerConfig& c = run.config;
  const int n = c.n_out;
  const float* alpha = run.params.alpha;
  float* v = row(run.membrane, t, b, run.B, n);
  if (t == 0) {
    for (int j = 0; j < n; ++j) v[j] = kernels::lif_step(0.0f, 0.0f, alpha[j], c.gain, current[j]);
  } else if (c.kind == LayerKind::readout) {
    const float* v_prev = row(run.membrane, t - 1, b, run.B, n);
    for (int j = 0; j < n; ++j)
      v[j] = kernels::lif_step(v_prev[j], 0.0f, alpha[j], c.gain, current[j]);
  } else if (c.reset == ResetMode::state) {
    const float* v_prev = row(run.membrane, t - 1, b, run.B, n);
    for (int j = 0; j < n; ++j)
      v[j] = kernels::lif_step(v_prev[j], kernels::state_reset(v_prev[j], c.theta1), alpha[j],
                               c.gain, current[j]);
  } else {  // reset only the neurons whose spike was emitted at t-1
    const float* v_prev = row(run.membrane, t - 1, b, run.B, n);
    const int32_t* emitted = run.output->list(t - 1, b);
    const int n_emitted = run.output->n_spk(t - 1, b);
    kernels::scatter_value(flags, emitted, n_emitted, 1.0f);
    for (int j = 0; j < n; ++j)
      v[j] = kernels::lif_step(v_prev[j], flags[j], alpha[j], c.gain, current[j]);
    kernels::scatter_value(flags, emitted, n_emitted, 0.0f);
  }
  if (c.kind == LayerKind::readout) return 0;
  SpikeTensor& out = *run.output;
  const auto counts = kernels::select_two_threshold(
      v, n, c.theta1, c.theta2, out.K(), run.overflow, kernels::stream_key(run.seed, t, b, 0),
      out.list(t, b), scratch.found.data(), scratch.priority.data());
  out.n_spk(t, b) = counts.n_spk;
  out.n_tot(t, b) = counts.n_tot;
  return counts.dropped;
}

void carry_membrane_grad(const LayerRun& run, int t, int b, float* gv, float* flags) {
  const LayerConfig& c = run.config;
  const float* alpha = run.params.alpha;
  const int n = c.n_out;
  if (c.kind == LayerKind::readout || c.reset_grad == ResetGrad::pass) {
    for (int j = 0; j < n; ++j) gv[j] *= alpha[j];
  } else if (c.reset == ResetMode::state) {  // r[t+1] = H(V[t] - theta1)
    const float* v = row(run.membrane, t, b, run.B, n);
    for (int j = 0; j < n; ++j)
      gv[j] *=
          kernels::carry_factor(alpha[j], kernels::state_reset(v[j], c.theta1), ResetGrad::mask);
  } else {  // r[t+1] = emitted at t
    const int32_t* emitted = run.output->list(t, b);
    const int n_emitted = run.output->n_spk(t, b);
    kernels::scatter_value(flags, emitted, n_emitted, 1.0f);
    for (int j = 0; j < n; ++j) gv[j] *= kernels::carry_factor(alpha[j], flags[j], ResetGrad::mask);
    kernels::scatter_value(flags, emitted, n_emitted, 0.0f);
  }
}

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace saltatory::cpu
