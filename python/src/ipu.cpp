// Bindings of the IPU tile planner: ipu_plan(layers, ...) -> dict (a pure function of its inputs).
#include "bindings.hpp"
#include "options.hpp"
#include "saltatory/ipu/plan.hpp"

namespace saltatory::python {

namespace {

py::dict memory_dict(const ipu::TileMemory& m) {
  py::dict d;
  d["weights"] = m.weights;
  d["weight_grads"] = m.weight_grads;
  d["optimizer"] = m.optimizer;
  d["parameters"] = m.parameters;
  d["membranes"] = m.membranes;
  d["current_grads"] = m.current_grads;
  d["input_lists"] = m.input_lists;
  d["output_lists"] = m.output_lists;
  d["scratch"] = m.scratch;
  d["total"] = m.total();
  return d;
}

}  // namespace

void init_ipu(py::module_& m) {
  // the option types first, so that ipu_plan's signature names them
  py::class_<ipu::PlanOptions>(m, "IpuPlanOptions")
      .def(py::init<>())
      .def_readwrite("T", &ipu::PlanOptions::T)
      .def_readwrite("B", &ipu::PlanOptions::B)
      .def_readwrite("input_capacity", &ipu::PlanOptions::input_capacity)
      .def_readwrite("neurons_per_tile", &ipu::PlanOptions::neurons_per_tile)
      .def_readwrite("optimizer_slots", &ipu::PlanOptions::optimizer_slots);
  py::class_<ipu::Target>(m, "IpuTarget")
      .def(py::init<>())
      .def_readwrite("ipus", &ipu::Target::ipus)
      .def_readwrite("tiles_per_ipu", &ipu::Target::tiles_per_ipu)
      .def_readwrite("workers_per_tile", &ipu::Target::workers_per_tile)
      .def_readwrite("bytes_per_tile", &ipu::Target::bytes_per_tile)
      .def_readwrite("reserved_bytes_per_tile", &ipu::Target::reserved_bytes_per_tile)
      .def_readwrite("clock_hz", &ipu::Target::clock_hz);
  m.def(
      "ipu_plan",
      [](const std::vector<LayerConfig>& layers, const std::string& coupling, int recompute_segment,
         const ipu::PlanOptions& options, const ipu::Target& target) {
        StackConfig config;
        config.layers = layers;
        config.coupling = parse(coupling, "ipu_plan", "coupling", kCouplings);
        config.recompute_segment = recompute_segment;
        const ipu::Plan plan = ipu::plan_stack(config, options, target);
        py::list placements;
        for (const ipu::LayerPlacement& p : plan.layers) {
          py::dict d;
          d["layer"] = p.layer;
          d["ipu"] = p.ipu;
          d["first_tile"] = p.first_tile;
          d["tiles"] = p.tiles;
          d["neurons_per_tile"] = p.neurons_per_tile;
          d["memory"] = memory_dict(p.memory);
          d["exchange_forward"] = p.exchange_forward;
          d["exchange_backward"] = p.exchange_backward;
          d["cycles_forward"] = p.cycles_forward;
          d["cycles_backward"] = p.cycles_backward;
          placements.append(d);
        }
        py::dict d;
        d["layers"] = placements;
        d["tiles_used"] = plan.tiles_used;
        d["ipus_used"] = plan.ipus_used;
        d["neurons_per_tile"] = plan.neurons_per_tile;
        d["weights"] = plan.weights;
        d["max_tile_bytes"] = plan.max_tile_bytes;
        d["mean_tile_bytes"] = plan.mean_tile_bytes;
        d["exchange_bytes_per_step"] = plan.exchange_bytes_per_step;
        d["cross_ipu_bytes_per_step"] = plan.cross_ipu_bytes_per_step;
        d["cycles_per_step"] = plan.cycles_per_step;
        d["seconds_per_training_step"] = plan.cycles_per_step * options.T / target.clock_hz;
        d["summary"] = ipu::summary(plan);
        return d;
      },
      py::arg("layers"), py::arg("coupling"), py::arg("recompute_segment"), py::arg("options"),
      py::arg("target"));
}

}  // namespace saltatory::python
