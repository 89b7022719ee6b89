// The op hook's fallback (see op_hook.h). The fast path: one atomic load of
// the active hook, a thread-local schema cache lookup, Gate::enter/exit.
#include "torch/op_hook.h"

#include <atomic>

#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

namespace acb::torch_hook {

namespace {
constexpr c10::DispatchKey kHookKey = c10::DispatchKey::TESTING_ONLY_GenericMode;

struct ActiveHook {
  Gate* gate = nullptr;
  DirtyTracker* tracker = nullptr;
  bool gate_all_ops = false;
};

ActiveHook g_hooks[2];               // alternated so readers never see a half-written one
std::atomic<ActiveHook*> g_active{nullptr};
std::atomic<int> g_next{0};
// Read on every operator: initial-exec TLS is one %fs-relative access, where
// the default model for a shared library calls __tls_get_addr each time. Its
// few bytes come from the static TLS surplus that glibc keeps for dlopen.
__attribute__((tls_model("initial-exec"))) thread_local int t_depth = 0;

struct DepthGuard {
  DepthGuard() { ++t_depth; }
  ~DepthGuard() { --t_depth; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;
};

struct GateGuard {
  explicit GateGuard(Gate& gate) : gate_(gate) { gate_.enter(); }
  ~GateGuard() { gate_.exit(); }
  GateGuard(const GateGuard&) = delete;
  GateGuard& operator=(const GateGuard&) = delete;
  Gate& gate_;
};

bool is_cuda_value(const c10::IValue& value) {
  if (value.isTensor()) return value.toTensor().defined() && value.toTensor().is_cuda();
  if (value.isDevice()) return value.toDevice().is_cuda();
  if (value.isTensorList()) {
    for (const at::Tensor& t : value.toTensorList()) {
      if (t.defined() && t.is_cuda()) return true;
    }
  }
  return false;
}

bool touches_device(const ActiveHook& hook, const c10::OperatorHandle& op, const torch::jit::Stack& stack) {
  if (hook.gate_all_ops) return true;
  const std::size_t nargs = op.schema().arguments().size();
  for (std::size_t i = stack.size() - nargs; i < stack.size(); ++i) {
    if (is_cuda_value(stack[i])) return true;
  }
  return false;
}

void redispatch_nested(const c10::OperatorHandle& op, c10::DispatchKeySet next, torch::jit::Stack* stack) {
  DepthGuard depth;
  // Nested operators (composite kernels) run inside this one's gate and
  // write only what this op's schema declares or fresh blocks (which the
  // arena marks when it allocates them): they skip the hook, and so its
  // boxing cost, entirely.
  c10::impl::ExcludeDispatchKeyGuard nested(kHookKey);
  op.redispatchBoxed(next, stack);
}

void run_and_mark(const ActiveHook& hook, const c10::OperatorHandle& op, c10::DispatchKeySet next,
                  torch::jit::Stack* stack) {
  const OpWrites& writes = hook.tracker->writes_of(op);
  if (writes.written_args.empty()) {
    // Most operators write only fresh outputs, which the arena marked when
    // it allocated them: nothing to collect before or mark after.
    redispatch_nested(op, next, stack);
    return;
  }
  WrittenStorages written;
  hook.tracker->collect_written_args(writes, op, *stack, written);
  redispatch_nested(op, next, stack);
  hook.tracker->mark_written_args(written);
}

void hook_fallback(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  static const c10::DispatchKeySet after(c10::DispatchKeySet::FULL_AFTER, kHookKey);
  const c10::DispatchKeySet next = keys & after;
  const ActiveHook* hook = g_active.load(std::memory_order_acquire);
  if (hook == nullptr) {
    op.redispatchBoxed(next, stack);
    return;
  }
  if (t_depth == 0 && touches_device(*hook, op, *stack)) {
    GateGuard gate(*hook->gate);
    run_and_mark(*hook, op, next, stack);
  } else {
    run_and_mark(*hook, op, next, stack);
  }
}
}  // namespace

TORCH_LIBRARY_IMPL(_, TESTING_ONLY_GenericMode, m) {
  m.fallback(torch::CppFunction::makeFromBoxedFunction<&hook_fallback>());
}

void activate_op_hook(Gate& gate, DirtyTracker& tracker, bool gate_all_ops) {
  ActiveHook& slot = g_hooks[g_next.fetch_add(1) & 1];
  slot.gate = &gate;
  slot.tracker = &tracker;
  slot.gate_all_ops = gate_all_ops;
  g_active.store(&slot, std::memory_order_release);
}

void deactivate_op_hook() { g_active.store(nullptr, std::memory_order_release); }

void attach_current_thread() { c10::impl::tls_set_dispatch_key_included(kHookKey, true); }
void detach_current_thread() { c10::impl::tls_set_dispatch_key_included(kHookKey, false); }
bool current_thread_attached() { return c10::impl::tls_is_dispatch_key_included(kHookKey); }

int current_op_depth() { return t_depth; }

void region_enter(Gate& gate) {
  if (t_depth == 0) gate.enter();
  ++t_depth;
}

void region_exit(Gate& gate) {
  if (t_depth <= 0) return;
  --t_depth;
  if (t_depth == 0) gate.exit();
}

}  // namespace acb::torch_hook
