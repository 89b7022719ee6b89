// acb._C: the private Python module. Only bindings here; the logic lives in
// session / lease_controller / gate / op_hook. Calls that can block (acquire,
// broker requests) release the GIL so the process's other threads go on.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <torch/csrc/autograd/python_variable.h>

#include "alloc/pluggable_allocator.h"
#include "alloc/process_arenas.h"
#include "client/broker_client.h"
#include "torch/cuda_allocator.h"
#include "torch/dirty_tracker.h"
#include "torch/export_pins.h"
#include "torch/hook_probe.h"
#include "torch/op_hook.h"
#include "torch/pluggable_hooks.h"
#include "torch/python_held_call.h"
#include "torch/python_threads.h"
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
// DirtyTracker's SubclassFlattener: acb._gating.plain_tensors, under the GIL
// (the op hook calls it after the operator, on the thread that issued it).
bool flatten_subclass(const at::Tensor& subclass, std::vector<at::Tensor>& inner) {
  try {
    py::gil_scoped_acquire gil;
    py::object tensor = py::reinterpret_steal<py::object>(THPVariable_Wrap(subclass));
    if (!tensor) throw py::error_already_set();
    py::object plain = py::module_::import("acb._gating").attr("plain_tensors")(py::make_tuple(tensor));
    for (py::handle item : plain) {
      if (THPVariable_Check(item.ptr())) inner.push_back(THPVariable_Unpack(item.ptr()));
    }
    return true;
  } catch (const std::exception&) {
    return false;  // the tracker then marks every segment
  }
}

py::dict status_dict(const th::ControllerStatus& s) {
  py::dict d;
#define ACB_STATUS_ITEM(type, name, initial) d[#name] = s.name;
  ACB_CONTROLLER_STATUS(ACB_STATUS_ITEM)
#undef ACB_STATUS_ITEM
  return d;
}

py::list status_fields() {
  py::list names;
#define ACB_STATUS_NAME(type, name, initial) names.append(#name);
  ACB_CONTROLLER_STATUS(ACB_STATUS_NAME)
#undef ACB_STATUS_NAME
  return names;
}
}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "acb's private torch extension (use the acb package instead)";
  m.attr("torch_version") = ACB_TORCH_VERSION;

  th::DirtyTracker::set_subclass_flattener(&flatten_subclass);
  py::register_exception<acb::client::BrokerError>(m, "BrokerError", PyExc_ConnectionError);
  py::register_exception<acb::client::LeaseRejected>(m, "LeaseRejected", PyExc_RuntimeError);

  m.def(
      "enable",
      [](const std::string& host, int port, const std::string& priority, const std::string& name, int device,
         int broker_device, int idle_gap_ms, bool emulated, double reconnect_timeout_s, py::object restart_broker,
         const std::string& safe_mode_reason, const std::string& unknown_device_hint,
         const std::string& broker_device_uuid, const std::string& gang, int gang_local_world_size,
         int gang_local_rank) {
        th::EnableOptions o;
        o.safe_mode_reason = safe_mode_reason;
        o.unknown_device_hint = unknown_device_hint;
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
        o.broker_device_uuid = broker_device_uuid;
        o.gang = {gang, gang_local_world_size, gang_local_rank};
        o.idle_gap_ms = idle_gap_ms;
        o.emulated = emulated;
        py::gil_scoped_release release;
        th::enable(o);
      },
      py::arg("host"), py::arg("port"), py::arg("priority"), py::arg("name"), py::arg("device"),
      py::arg("broker_device"), py::arg("idle_gap_ms"), py::arg("emulated"), py::arg("reconnect_timeout_s") = 30.0,
      py::arg("restart_broker") = py::none(), py::arg("safe_mode_reason") = "", py::arg("unknown_device_hint") = "", py::arg("broker_device_uuid") = "",
      py::arg("gang") = "", py::arg("gang_local_world_size") = 0, py::arg("gang_local_rank") = -1,
      "gates device operators from now on; the first one joins the broker (restart_broker, when given, is "
      "called before each connection: it finds or starts the embedded broker)");
  m.def("disable", &th::disable, py::call_guard<py::gil_scoped_release>());
  m.def("enter_safe_mode", &th::enter_safe_mode, py::arg("reason"), py::call_guard<py::gil_scoped_release>(),
        "safe mode for good: for code that finds work acb cannot see (said once on stderr with the reason)");
  m.def("enabled", &th::enabled);
  m.def("activated", &th::activated, "enabled, and a device operation has made the arena and joined the broker");
  m.def("_device_opened", &acb::alloc::process_driver_opened,
        "whether this process has opened its device driver (CUDA: cuInit) yet; opens nothing");
  m.def("status", [] { return status_dict(th::status()); });
  m.def("status_fields", &status_fields, "the names acb.status() reports, in order (csrc/torch/controller_status.h)");
  // torch's CUDA pluggable allocator (acb._api._install_cuda_allocator).
  m.def("cuda_allocator_functions", [] {
    return py::make_tuple(reinterpret_cast<std::uintptr_t>(&th::cuda_malloc),
                          reinterpret_cast<std::uintptr_t>(&acb_alloc_free));
  }, "(alloc_fn, free_fn) addresses for torch._C._cuda_customAllocator");
  m.def("cuda_allocator_hooks_missing", [] { return th::pluggable_hooks_missing(th::default_torch_cuda_libraries()); },
        "why record_stream/empty_cache cannot be given to torch's pluggable allocator; '' when they can");
  m.def("install_cuda_allocator_hooks", [] { th::install_pluggable_hooks(th::default_torch_cuda_libraries()); },
        "gives torch's current pluggable allocator acb's record_stream and empty_cache");
  m.def("_cuda_malloc", [](std::size_t size, int device) {
    return reinterpret_cast<std::uintptr_t>(th::cuda_malloc(size, device, nullptr));
  }, "tests only: the alloc_fn torch calls, on the null stream");
  m.def("_cuda_free", [](std::uintptr_t ptr, int device) {
    acb_alloc_free(reinterpret_cast<void*>(ptr), 0, device, nullptr);
  }, "tests only: the free_fn torch calls, on the null stream");
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
  m.def("region_enter", [] {
    th::Gate& gate = th::process_gate();
    if (th::region_try_enter(gate)) return;  // held already: no GIL round trip
    py::gil_scoped_release release;          // may wait for the lease
    th::region_enter(gate);
  });
  m.def("region_exit_unmarked", [] { th::region_exit(th::process_gate()); },
        "region_exit(mark_all=False) without argument parsing (the end of a compiled call's hold)");
  {
    // A torch.compile context's enter/exit hook: holds the device for the call
    // and returns its cleanup (region_exit_unmarked). Once acb is disabled it
    // holds nothing and returns a cleanup that does nothing.
    py::object exit_fn = m.attr("region_exit_unmarked");
    py::object nothing = py::cpp_function([] {});
    m.attr("_frame_cleanup_nothing") = nothing;
    m.def("frame_hold", [exit_fn, nothing]() -> py::object {
      if (!th::op_hook_active()) return nothing;
      th::Gate& gate = th::process_gate();
      if (!th::region_try_enter(gate)) {
        py::gil_scoped_release release;
        th::region_enter(gate);
      }
      return exit_fn;
    }, "holds the device until the returned function is called (a dynamo context's enter/exit hook)");
  }
  m.attr("held_graph_call") = th::held_graph_call_function();
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
          const th::StorageRange range = th::storage_range(THPVariable_Unpack(item.ptr()));
          if (range.data != nullptr) th::mark_written(range.data, range.bytes);
        }
      },
      py::arg("tensors"),
      "marks the storages of these plain tensors written (others are skipped; flatten subclasses first)");
  m.def("mark_all_written", &th::mark_all_written, "marks every segment of the arena written");
  m.def(
      "pin_storage",
      [](py::handle tensor) -> py::object {
        TORCH_CHECK(THPVariable_Check(tensor.ptr()), "acb._C.pin_storage: expected a tensor");
        const th::StorageRange range = th::storage_range(THPVariable_Unpack(tensor.ptr()));
        if (range.data == nullptr) return py::none();
        std::size_t pinned = 0;
        {
          py::gil_scoped_release release;
          pinned = th::pin_exported(range.data, range.bytes);
        }
        if (pinned == 0) return py::none();
        return py::make_tuple(reinterpret_cast<std::uintptr_t>(range.data), range.bytes);
      },
      py::arg("tensor"),
      "keeps the tensor's storage resident until unpin(address, bytes); returns (address, bytes), "
      "or None when the storage is not in the arena (nothing to unpin)");
  m.def(
      "unpin",
      [](std::uintptr_t address, std::size_t bytes) {
        th::unpin_exported(reinterpret_cast<const void*>(address), bytes);
      },
      py::arg("address"), py::arg("bytes"), py::call_guard<py::gil_scoped_release>(),
      "ends one pin_storage; the storage counts as written");
  m.def(
      "pin_dlpack_capsule",
      [](py::handle capsule, py::handle tensor) {
        TORCH_CHECK(THPVariable_Check(tensor.ptr()), "acb._C.pin_dlpack_capsule: expected a tensor");
        try {
          return th::pin_dlpack_capsule(capsule.ptr(), THPVariable_Unpack(tensor.ptr()));
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      },
      py::arg("capsule"), py::arg("tensor"),
      "keeps the tensor's storage resident until the DLPack capsule's managed tensor is deleted; "
      "False when the storage is not in the arena");
  m.def(
      "hold_gate",
      [] {
        TORCH_CHECK(th::current_op_depth() > 0,
                    "acb._C.hold_gate: call it inside acb._gating.held() (this thread holds no gate)");
        th::process_gate().enter_while_held();
      },
      "one more unit of the gate held, for work started inside held() that outlives it; ended by release_gate()");
  m.def("release_gate", [] { th::process_gate().exit(); }, "ends a unit taken by hold_gate(), from any thread");
  m.def(
      "attach_existing_threads",
      [] {
        const int count = th::attach_existing_python_threads();
        if (count < 0 && PyErr_Occurred() != nullptr) throw py::error_already_set();
        return count;
      },
      "attaches every other Python thread at its next profile event; the count, or -1 where this Python cannot");
  m.def("other_python_threads", &th::other_python_threads, "thread states of this interpreter besides the caller's");
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
