// A compiled graph's call, held like one outer operator and its writes marked,
// in one crossing from Python (acb._compile wraps Inductor's CompiledFxGraph
// with it). Doing the hold, the call and the marking here instead of as
// separate Python-level calls keeps the cost per compiled call to the gate's
// two atomics and one arena lock (docs/torch.md, "torch.compile").
//
// Thread-safety: called with the GIL held; drops it only while waiting for the lease.
#pragma once

#include <pybind11/pybind11.h>

namespace acb::torch_hook {

/// held_graph_call(call, graph, inputs: list, written_inputs: tuple | None):
/// returns call(graph, inputs). When this thread holds nothing yet the gate
/// is entered first (blocking for the lease with the GIL released) and left
/// after; inside a hold it stays as it is. Before the gate can be let go,
/// the storages of inputs[i] for i in `written_inputs` (every input when it
/// is None; ranges read before the call, which may empty `inputs`) and of
/// every output tensor are marked written, also when the call raises.
/// A METH_FASTCALL function: pybind11's argument dispatch would cost more
/// than the rest of the hold.
pybind11::object held_graph_call_function();

}  // namespace acb::torch_hook
