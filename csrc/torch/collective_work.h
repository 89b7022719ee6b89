// The device held until a collective's work is done, for c10d operators the
// program does not call through torch.distributed's Python functions.
//
// A c10d operator (allreduce_, broadcast_, recv_, ...) returns a Work before
// its backend has finished: gloo writes the tensors on its own threads
// afterwards, so the operator's gate ends while memory of the device is still
// being written. python/acb/_collectives.py holds the device for the calls it
// wraps (torch.distributed.all_reduce and friends); operators issued from C++
// never pass there: DistributedDataParallel's reducer all-reduces gradient
// buckets during backward and waits for them only at its end, and
// _broadcast_coalesced syncs the module's state at construction. An offload
// between launch and completion would make the tensors inaccessible under the
// backend's feet (a fault on the emulated device) or copy them before the
// backend's write (a lost write).
//
// hold_until_done() is called by the op hook after a c10d operator returned,
// inside its gate: for each Work among the operator's outputs it takes one more
// unit of the gate (Gate::enter_while_held), and lets it go, after marking the
// operator's tensors written, once the Work's future completes (with a value
// or an error), from the backend's thread. A Work without a future is waited
// for on a thread of its own. Completion before the call returns is handled
// the same way, at once. On CUDA, NCCL completes its future when the work is
// enqueued (the stream orders the rest, and a yield synchronises the device
// first), so the unit is let go at once there.
//
// Functional collectives (`_c10d_functional::`, used by DTensor and compiled
// code) return no Work: the program waits with wait_tensor(output), an
// operator of its own. On CUDA the collective runs on a stream and a yield
// synchronises the device first; on the emulated device gloo writes host
// memory of the arena meanwhile, so there the op hook waits for the outputs
// inside the collective's gate (wait_functional_outputs): the collective
// becomes synchronous, its results stay the same.
//
// Thread-safety: the callbacks run on the backend's threads; the gate and the
// tracker are process-lifetime objects and thread-safe.
#pragma once

#include <vector>

#include <ATen/core/stack.h>

#include "torch/dirty_tracker.h"
#include "torch/gate.h"

namespace acb::torch_hook {

/// The tensors among a c10d operator's arguments (tensors and tensor lists),
/// kept before the call, to be marked when its work is done.
std::vector<at::Tensor> collective_tensors(const c10::OperatorHandle& op, const torch::jit::Stack& stack);

/// After a c10d operator returned `outputs` (its results, on top of the stack)
/// inside the gate: keeps the gate held for each Work among them until it is
/// done, then marks `tensors` written.
void hold_until_done(Gate& gate, const DirtyTracker& tracker, const torch::jit::Stack& stack,
                     std::size_t outputs, std::vector<at::Tensor> tensors);

/// After a functional collective (`_c10d_functional::all_reduce`, ...) returned
/// `outputs` on top of the stack: waits for their work (wait_tensor on each
/// output tensor, which a later wait_tensor of the program then finds done).
/// On the emulated device the collective thus completes inside its operator's
/// gate; its outputs are fresh, or written arguments the caller marks.
void wait_functional_outputs(const torch::jit::Stack& stack, std::size_t outputs);

}  // namespace acb::torch_hook
