// acb._C: the private Python module. Only bindings here; the logic lives in
// session / lease_controller / gate / op_hook. Calls that can block (acquire,
// broker requests) release the GIL so the process's other threads go on.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <torch/csrc/autograd/python_variable.h>

#include "client/broker_client.h"
#include "torch/hook_probe.h"
#include "torch/op_hook.h"
#include "torch/session.h"

#ifndef ACB_TORCH_VERSION
#error "ACB_TORCH_VERSION (the torch version built against) must be defined by the build"
#endif

// Readable in the binary even when the module cannot be loaded, so that
// acb/_loader.py can say which torch it was built for.
extern "C" __attribute__((used, visibility("default"))) const char acb_built_against_torch[] =
    "ACB_BUILT_AGAINST_TORCH=" ACB_TORCH_VERSION ";";

namespace py = pybind11;
namespace th = acb::torch_hook;

namespace {
py::dict status_dict(const th::ControllerStatus& s) {
  py::dict d;
  d["lease_state"] = s.lease_state;
  d["client_id"] = s.client_id;
  d["broker_device"] = s.broker_device;
  d["resident_bytes"] = s.resident_bytes;
  d["offloaded_bytes"] = s.offloaded_bytes;
  d["reserved_bytes_peak"] = s.reserved_bytes_peak;
  d["waits"] = s.waits;
  d["wait_total_ms"] = s.wait_total_ms;
  d["wait_p99_ms"] = s.wait_p99_ms;
  d["wait_max_ms"] = s.wait_max_ms;
  d["switches"] = s.switches;
  d["releases"] = s.releases;
  d["revokes"] = s.revokes;
  d["evicts"] = s.evicts;
  d["offloads"] = s.offloads;
  d["offload_copied_bytes"] = s.offload_copied_bytes;
  d["skipped_clean_bytes"] = s.skipped_clean_bytes;
  d["restored_bytes"] = s.restored_bytes;
  d["regions"] = s.regions;
  d["oom_regrows"] = s.oom_regrows;
  d["reconnects"] = s.reconnects;
  d["safe_mode_reason"] = s.safe_mode_reason;
  return d;
}
}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "acb's private torch extension (use the acb package instead)";
  m.attr("torch_version") = ACB_TORCH_VERSION;

  py::register_exception<acb::client::BrokerError>(m, "BrokerError", PyExc_ConnectionError);
  py::register_exception<acb::client::LeaseRejected>(m, "LeaseRejected", PyExc_RuntimeError);

  m.def(
      "enable",
      [](const std::string& host, int port, const std::string& priority, const std::string& name, int device,
         int broker_device, int idle_gap_ms, bool emulated, double reconnect_timeout_s, py::object restart_broker,
         const std::string& safe_mode_reason) {
        th::EnableOptions o;
        o.safe_mode_reason = safe_mode_reason;
        o.reconnect_timeout_ms = static_cast<std::int64_t>(reconnect_timeout_s * 1000.0);
        if (!restart_broker.is_none()) {
          // Called on an op thread, without the GIL or with it (an op issued
          // from Python): gil_scoped_acquire handles both. The callable is
          // released under the GIL too, whichever thread drops the last copy.
          std::shared_ptr<py::object> callable(new py::object(std::move(restart_broker)), [](py::object* p) {
            py::gil_scoped_acquire gil;
            delete p;
          });
          o.before_reconnect = [callable] {
            py::gil_scoped_acquire gil;
            try {
              (*callable)();
            } catch (py::error_already_set& e) {
              throw std::runtime_error(std::string("restarting the broker failed: ") + e.what());
            }
          };
        }
        o.host = host;
        o.port = static_cast<std::uint16_t>(port);
        o.priority = priority;
        o.name = name;
        o.device = device;
        o.broker_device = broker_device;
        o.idle_gap_ms = idle_gap_ms;
        o.emulated = emulated;
        py::gil_scoped_release release;
        th::enable(o);
      },
      py::arg("host"), py::arg("port"), py::arg("priority"), py::arg("name"), py::arg("device"),
      py::arg("broker_device"), py::arg("idle_gap_ms"), py::arg("emulated"), py::arg("reconnect_timeout_s") = 30.0,
      py::arg("restart_broker") = py::none(), py::arg("safe_mode_reason") = "");
  m.def("disable", &th::disable, py::call_guard<py::gil_scoped_release>());
  m.def("enter_safe_mode", &th::enter_safe_mode, py::arg("reason"), py::call_guard<py::gil_scoped_release>(),
        "safe mode for good: for code that finds work acb cannot see (said once on stderr with the reason)");
  m.def("enabled", &th::enabled);
  m.def("status", [] { return status_dict(th::status()); });
  m.def("set_priority", &th::set_priority, py::call_guard<py::gil_scoped_release>());
  m.def(
      "broker_status",
      [] {
        nlohmann::json reply;
        {
          py::gil_scoped_release release;
          reply = th::broker_status();
        }
        return reply.dump();
      },
      "the broker's status reply, as JSON text");
  m.def("yield_now", &th::yield_now, py::call_guard<py::gil_scoped_release>());

  m.def("attach_thread", &th::attach_current_thread, "gate this thread's operators");
  m.def("detach_thread", &th::detach_current_thread);
  m.def("thread_attached", &th::current_thread_attached);
  m.def("region_enter", [] { th::region_enter(th::process_gate()); },
        py::call_guard<py::gil_scoped_release>());
  m.def(
      "region_exit",
      [](bool mark_all) {
        // What the block wrote is marked before the gate lets an offload in.
        if (mark_all && th::current_op_depth() == 1) th::mark_all_written();
        th::region_exit(th::process_gate());
      },
      py::arg("mark_all") = true,
      "ends acb.region(); the outermost exit marks every segment written unless mark_all is false");
  m.def(
      "mark_tensors_written",
      [](const py::iterable& tensors) {
        for (py::handle item : tensors) {
          if (!THPVariable_Check(item.ptr())) continue;
          const at::Tensor& t = THPVariable_Unpack(item.ptr());
          if (!t.defined() || !t.has_storage()) continue;
          const c10::StorageImpl* storage = t.storage().unsafeGetStorageImpl();
          const void* data = storage->data_ptr().get();
          if (data != nullptr && storage->nbytes() > 0) th::mark_written(data, storage->nbytes());
        }
      },
      py::arg("tensors"),
      "marks the storages of these plain tensors written (others are skipped; flatten subclasses first)");
  m.def("mark_all_written", &th::mark_all_written, "marks every segment of the arena written");
  m.def("op_depth", &th::current_op_depth, "this thread's operator/region nesting depth");

  // Benchmarks only (docs/torch.md, "Op hook").
  m.def("_bench_tiny_ops_ns", [](py::handle tensor, std::int64_t iterations, const std::string& op) {
    TORCH_CHECK(THPVariable_Check(tensor.ptr()), "_bench_tiny_ops_ns: expected a tensor");
    TORCH_CHECK(op == "add_" || op == "clamp_min_", "_bench_tiny_ops_ns: op is add_ or clamp_min_, not ", op);
    at::Tensor t = THPVariable_Unpack(tensor.ptr());
    py::gil_scoped_release release;
    return th::time_tiny_ops_ns(t, iterations, op == "add_" ? th::TinyOp::add_ : th::TinyOp::clamp_min_);
  }, py::arg("tensor"), py::arg("iterations"), py::arg("op") = "add_");
  m.def("_unboxed_hook_operators", &th::unboxed_hook_operators,
        "the operators with an unboxed hook kernel (the others go through the boxed fallback)");
  m.def("_bench_record_function_hook", [](bool on) { th::set_record_function_hook(on, th::process_gate()); });
}
