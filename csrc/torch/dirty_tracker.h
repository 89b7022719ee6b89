// DirtyTracker: tells the arena which memory an operator writes, so that an
// offload copies only what changed since its last backup (inference weights
// are copied out once, then never again).
//
// What an op writes comes from its schema's alias annotations: arguments
// annotated as written (`Tensor(a!)`, including tensor lists) are marked
// after the op. Views (`Tensor(a)`) write nothing. Returns without alias
// annotation are fresh by the schema's contract: their memory was allocated
// during the op, after the last safe point (offload only happens between
// ops), and the arena marks the segment of every block it allocates, so
// marking them again would only take the arena's lock on every op. The
// analysis is cached per operator (per thread, no lock). A tensor's whole
// storage is marked, which over-approximates views but never misses a write.
//
// Arguments named running_mean/running_var count as written: the batch-norm
// family updates them in place without declaring it; so does every argument
// of a c10d operator (collectives declare none of their writes, and their
// backend may write after they return: the op hook holds the device until
// the work is done and marks them again then, torch/collective_work.h).
//
// Tensor subclasses with __torch_dispatch__ (DTensor, FSDP2's, Float8, NF4:
// wrapper subclasses) have no storage of their own: their data lives in inner
// tensors, which __torch_dispatch__ writes with operators the hook never sees
// (torch runs them with every key above Python excluded, the hook's too). A
// written argument that carries DispatchKey::Python (one bit of its key set;
// plain tensors and nn.Parameter do not) is flattened after the call by the
// flattener the Python binding installs (acb._gating.plain_tensors: each
// __tensor_flatten__ inner tensor, recursively) and those storages are
// marked. Without a flattener, or when flattening fails, every segment is
// marked: a copy too many, never a lost write.
//
// Limits: writes that bypass the dispatcher or that a schema does not declare
// (other than the running statistics above, e.g. a kernel that returns a
// cached buffer as a "fresh" output) are not seen here.
//
// The tracker exists from acb.enable() on, the arena only from the process's
// first device operation (torch/session.h): until track() names it, nothing
// is marked, since no memory of the brokered device can have been written.
//
// Thread-safety: thread-safe (the cache is thread-local; the arena locks;
// track() publishes the arena with one atomic store).
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/SmallVector.h>
#include <ATen/core/stack.h>

#include "alloc/arena.h"

namespace acb::torch_hook {

/// An op's written arguments, collected before the call: their storages (no
/// heap for a few) and the tensor subclasses among them, flattened after it.
struct WrittenStorages {
  c10::SmallVector<const c10::StorageImpl*, 4> storages;
  std::vector<at::Tensor> subclasses;  ///< empty, without allocating, for plain tensors

  void add(const at::Tensor& t) {
    if (!t.defined()) return;
    if (t.key_set().has(c10::DispatchKey::Python)) [[unlikely]] {
      subclasses.push_back(t);
    } else if (t.has_storage()) {
      storages.push_back(t.storage().unsafeGetStorageImpl());
    }
  }
};

/// Appends the plain tensors that hold a tensor subclass's data (its inner
/// tensors, recursively). Returns false when it cannot tell.
using SubclassFlattener = bool (*)(const at::Tensor& subclass, std::vector<at::Tensor>& inner);

/// What one operator writes, by position.
struct OpWrites {
  std::vector<int> written_args;  ///< argument indices annotated as written
  /// A c10d operator: its work may outlive the call (collective_work.h).
  bool collective = false;
  /// A functional collective (`_c10d_functional::`, but wait_tensor): its
  /// work is waited for by a later wait_tensor (collective_work.h).
  bool functional_collective = false;
};

class DirtyTracker {
 public:
  DirtyTracker() = default;
  /// From now on, marks go to `arena` (which outlives the tracker: both live for the process).
  void track(alloc::Arena& arena) { arena_.store(&arena, std::memory_order_release); }

  /// The cached analysis of `op`'s schema.
  const OpWrites& writes_of(const c10::OperatorHandle& op);

  /// Before the call: remembers the storages of written arguments (the
  /// kernel pops its arguments off the stack).
  void collect_written_args(const OpWrites& writes, const c10::OperatorHandle& op,
                            const torch::jit::Stack& stack, WrittenStorages& out) const;
  /// After the call: marks the collected storages.
  void mark_written_args(const WrittenStorages& written_args) const;

  /// Marks one storage when it lives in the arena.
  void mark_storage(const c10::StorageImpl* storage) const;
  /// Marks a tensor's whole storage when it lives in the arena; a tensor
  /// subclass's inner tensors' storages.
  void mark_tensor(const at::Tensor& tensor) const {
    if (!tensor.defined()) return;
    if (tensor.key_set().has(c10::DispatchKey::Python)) [[unlikely]] {
      mark_subclass(tensor);
    } else if (tensor.has_storage()) {
      mark_storage(tensor.storage().unsafeGetStorageImpl());
    }
  }
  /// Marks the storages of a tensor subclass's inner tensors (every segment
  /// when they cannot be told).
  void mark_subclass(const at::Tensor& subclass) const;

  /// Installs the flattener (process-wide; the Python binding's).
  static void set_subclass_flattener(SubclassFlattener flattener);

  /// For unboxed kernels: bit i set when argument i of the operator is
  /// written (the same analysis as writes_of). An operator the dispatcher
  /// does not know gets every bit: marking too much costs a copy, too little
  /// loses a write.
  static std::uint64_t written_arg_mask(const char* name, const char* overload_name);

 private:
  std::atomic<alloc::Arena*> arena_{nullptr};
};

}  // namespace acb::torch_hook
