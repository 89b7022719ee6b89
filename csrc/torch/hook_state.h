// The op hook's shared state, private to its two entry points: the boxed
// fallback that sees every operator (op_hook.cpp) and the unboxed kernels of
// the most frequent operators (unboxed_ops.cpp), which do the same work
// without torch boxing and unboxing their arguments.
//
// An operator on the brokered device that reaches the hook runs inside an
// OpScope: when it is outermost the gate is entered (blocking while the
// lease is not held); the thread's op depth is raised; and the hook's key is
// taken out of the thread's included dispatch keys so that nested operators
// (composite kernels calling others) go straight to their kernels, inside
// their caller's gate. Operators issued inside acb.region() reach the hook
// at depth > 0: they are marked but not gated again. Taking the key out
// touches c10's thread-local key set directly: ExcludeDispatchKeyGuard costs
// two out-of-line calls and two TLS lookups per operator, a quarter of the
// hook's budget.
//
// Thread-safety: the active hook is published with release/acquire and never
// freed; everything else here is thread-local.
#pragma once

#include <atomic>

#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include "torch/dirty_tracker.h"
#include "torch/gate.h"

#if defined(_MSC_VER) || defined(C10_ANDROID) || defined(C10_IPHONE)
#error "acb's op hook reads c10::impl::raw_local_dispatch_key_set, which these builds of c10 do not export"
#endif

namespace acb::torch_hook::detail {

inline constexpr c10::DispatchKey kHookKey = c10::DispatchKey::TESTING_ONLY_GenericMode;
/// The keys an operator is redispatched to once the hook is done with it.
inline constexpr c10::DispatchKeySet kKeysAfterHook{c10::DispatchKeySet::FULL_AFTER, kHookKey};

struct ActiveHook {
  Gate* gate = nullptr;
  DirtyTracker* tracker = nullptr;
  bool gate_all_ops = false;  ///< emulation: every operator uses the brokered (CPU) device
};

/// The hook in force, or null while acb is disabled.
extern std::atomic<const ActiveHook*> g_active_hook;
/// Operator depth of this thread inside the hook (and acb.region()). Initial-exec
/// TLS: one %fs-relative access, where the default model for a shared library
/// calls __tls_get_addr each time; its few bytes come from the static TLS
/// surplus that glibc keeps for dlopen.
extern __attribute__((tls_model("initial-exec"))) thread_local int t_op_depth;

/// The gate of the outermost operator (null when nested).
inline Gate* gate_if_outermost(const ActiveHook& hook) { return t_op_depth == 0 ? hook.gate : nullptr; }

/// Gate held (`gate` non-null), depth raised and the hook's key hidden from
/// nested operators, for the lifetime of one operator.
class OpScope {
 public:
  explicit OpScope(Gate* gate) : gate_(gate) {
    if (gate_ != nullptr) gate_->enter();  // may block and may throw; nothing else is done yet then
    ++t_op_depth;
    c10::impl::PODLocalDispatchKeySet& keys = c10::impl::raw_local_dispatch_key_set;
    const c10::DispatchKeySet included = keys.included();
    hid_key_ = included.has(kHookKey);
    if (hid_key_) keys.set_included(included.remove(kHookKey));
  }
  ~OpScope() {
    if (hid_key_) {
      c10::impl::PODLocalDispatchKeySet& keys = c10::impl::raw_local_dispatch_key_set;
      keys.set_included(keys.included().add(kHookKey));
    }
    --t_op_depth;
    if (gate_ != nullptr) gate_->exit();
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  Gate* gate_;
  bool hid_key_ = false;
};

}  // namespace acb::torch_hook::detail
