// held_graph_call (see python_held_call.h).
#include "torch/python_held_call.h"

#include <torch/csrc/autograd/python_variable.h>

#include <c10/util/SmallVector.h>

#include "torch/op_hook.h"
#include "torch/session.h"

namespace py = pybind11;

namespace acb::torch_hook {

namespace {
struct Range {
  const void* data;
  std::size_t bytes;
};
using Ranges = c10::SmallVector<Range, 8>;

void add_range(PyObject* object, Ranges& out) {
  if (!THPVariable_Check(object)) return;
  const at::Tensor& t = THPVariable_Unpack(object);
  if (!t.defined() || !t.has_storage()) return;
  const c10::StorageImpl* storage = t.storage().unsafeGetStorageImpl();
  const void* data = storage->data_ptr().get();
  if (data != nullptr) out.push_back({data, storage->nbytes()});  // size asked only of real storage
}

/// The gate held for the call (when outermost) and left after marking, also on an exception.
class Hold {
 public:
  Hold() : outermost_(current_op_depth() == 0) {
    if (!outermost_) return;
    Gate& gate = process_gate();
    if (!region_try_enter(gate)) {
      py::gil_scoped_release release;
      region_enter(gate);
    }
  }
  ~Hold() {
    if (outermost_) region_exit(process_gate());
  }
  Hold(const Hold&) = delete;
  Hold& operator=(const Hold&) = delete;

 private:
  bool outermost_;
};

void mark(const Ranges& ranges) {
  for (const Range& r : ranges) {
    if (r.bytes > 0) mark_written(r.data, r.bytes);
  }
}


PyObject* held_graph_call(PyObject* /*module*/, PyObject* const* args, Py_ssize_t nargs) {
  try {
    if (nargs != 4 || !PyList_Check(args[2]) || !(args[3] == Py_None || PyTuple_Check(args[3]))) {
      PyErr_SetString(PyExc_TypeError, "held_graph_call(call, graph, inputs: list, written_inputs: tuple | None)");
      return nullptr;
    }
    PyObject* inputs = args[2];
    const Py_ssize_t count = PyList_GET_SIZE(inputs);
    Ranges written;
    if (args[3] == Py_None) {
      for (Py_ssize_t i = 0; i < count; ++i) add_range(PyList_GET_ITEM(inputs, i), written);
    } else {
      for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(args[3]); ++k) {
        const Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(args[3], k));
        if (i == -1 && PyErr_Occurred()) return nullptr;
        if (0 <= i && i < count) add_range(PyList_GET_ITEM(inputs, i), written);
      }
    }
    Hold hold;
    PyObject* call_args[2] = {args[1], inputs};
    PyObject* outputs = PyObject_Vectorcall(args[0], call_args, 2, nullptr);
    if (outputs != nullptr) {
      if (PyList_Check(outputs) || PyTuple_Check(outputs)) {
        PyObject* fast = PySequence_Fast(outputs, "outputs");
        for (Py_ssize_t i = 0; fast != nullptr && i < PySequence_Fast_GET_SIZE(fast); ++i) {
          add_range(PySequence_Fast_GET_ITEM(fast, i), written);
        }
        Py_XDECREF(fast);
      } else {
        add_range(outputs, written);
      }
    }
    mark(written);  // also when the graph raised: it may have written part
    return outputs;
  } catch (...) {
    py::detail::try_translate_exceptions();  // acquire errors, as pybind11 functions raise them
    return nullptr;
  }
}

PyMethodDef g_held_graph_call_def = {"held_graph_call", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&held_graph_call)),
                                     METH_FASTCALL,
                                     "held_graph_call(call, graph, inputs, written_inputs): a compiled graph's call, "
                                     "held like one outer operator, its written inputs and outputs marked"};
}  // namespace

py::object held_graph_call_function() {
  return py::reinterpret_steal<py::object>(PyCFunction_New(&g_held_graph_call_def, nullptr));
}

}  // namespace acb::torch_hook
