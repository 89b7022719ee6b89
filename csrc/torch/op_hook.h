// The op hook: a boxed dispatcher fallback on DispatchKey::TESTING_ONLY_GenericMode
// (the one spare mode key), which a thread takes part in by including the
// key in its thread-local dispatch state (attach_current_thread()), plus
// unboxed kernels on the same key for the most frequent operators
// (unboxed_op_list.h), which do the same without boxing the arguments.
//
// For every operator an attached thread issues it
//   - gates the outermost operator: Gate::enter() before, Gate::exit() after;
//     nested calls from composite kernels run with the key excluded, inside
//     their caller's gate, and are not boxed a second time;
//   - marks what the operator wrote (DirtyTracker) before leaving the gate,
//     so an offload never misses a write.
// Which operators are gated: all of them in emulation mode (the brokered
// device is the CPU arena), otherwise those with a CUDA tensor or a CUDA
// device argument.
//
// The key sits above Autograd, so backward kernels that the autograd engine
// runs see it through the ThreadLocalState the engine propagates; threads
// started by the user do not inherit it (the Python layer attaches them).
//
// Thread-safety: install/activate are thread-safe; the hook itself is
// re-entrant and lock-free on the fast path.
#pragma once

#include <string>
#include <vector>

#include "torch/dirty_tracker.h"
#include "torch/gate.h"

namespace acb::torch_hook {

/// Starts routing attached threads' operators through `gate` and `tracker`,
/// which must outlive every later operator (they are process-lifetime objects).
void activate_op_hook(Gate& gate, DirtyTracker& tracker, bool gate_all_ops);
/// Lets operators pass untouched again (attached threads stay attached).
void deactivate_op_hook();
/// True between activate_op_hook() and deactivate_op_hook() (acb enabled).
bool op_hook_active();

/// Includes / excludes the hook's key in this thread's dispatch state.
void attach_current_thread();
void detach_current_thread();
bool current_thread_attached();

/// The operators with an unboxed hook kernel, as "add_.Tensor".
std::vector<std::string> unboxed_hook_operators();

/// Operator nesting depth of this thread inside the hook (0 outside any op).
int current_op_depth();

/// Holds the gate on this thread like an operator does (acb.region()).
/// Ops issued inside run nested, so they do not gate again.
void region_enter(Gate& gate);
/// region_enter() when it need not block (depth > 0 or the gate open); false
/// (nothing entered) otherwise, so a caller can drop the GIL before blocking.
bool region_try_enter(Gate& gate);
void region_exit(Gate& gate);

}  // namespace acb::torch_hook
