// The op hook's boxed fallback (see op_hook.h): every operator an attached
// thread issues that has no unboxed kernel of its own (unboxed_ops.cpp)
// comes here, boxed. The fast path: one atomic load of the active hook, the
// cached schema analysis, an OpScope (hook_state.h).
#include "torch/op_hook.h"

#include <torch/library.h>

#include "torch/collective_work.h"
#include "torch/hook_state.h"

namespace acb::torch_hook {

namespace detail {
std::atomic<const ActiveHook*> g_active_hook{nullptr};
__attribute__((tls_model("initial-exec"))) thread_local int t_op_depth = 0;
}  // namespace detail

namespace {
using detail::ActiveHook;
using detail::kHookKey;
using detail::t_op_depth;

ActiveHook g_hooks[2];  // alternated so readers never see a half-written one
std::atomic<int> g_next{0};

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

void run_hooked(const ActiveHook& hook, const c10::OperatorHandle& op, c10::DispatchKeySet next,
                torch::jit::Stack* stack) {
  detail::OpScope scope(detail::gate_if_outermost(hook));
  const OpWrites& writes = hook.tracker->writes_of(op);
  // Emulation: gloo writes a functional collective's tensors (host memory of
  // the arena) until wait_tensor; the op waits inside its gate (collective_work.h).
  const bool wait_for_outputs = writes.functional_collective && hook.gate_all_ops;
  if (writes.written_args.empty() && !wait_for_outputs) {
    // Most operators write only fresh outputs, which the arena marked when
    // it allocated them: nothing to collect before or mark after.
    op.redispatchBoxed(next, stack);
    return;
  }
  // The kernel pops its arguments: collect the written storages first. They
  // are marked even when the kernel throws, which may have written part.
  WrittenStorages written;
  hook.tracker->collect_written_args(writes, op, *stack, written);
  std::vector<at::Tensor> collective;
  if (writes.collective) [[unlikely]] collective = collective_tensors(op, *stack);
  try {
    op.redispatchBoxed(next, stack);
    if (wait_for_outputs) [[unlikely]] wait_functional_outputs(*stack, op.schema().returns().size());
  } catch (...) {
    hook.tracker->mark_written_args(written);
    throw;
  }
  hook.tracker->mark_written_args(written);
  if (writes.collective) [[unlikely]] {
    // Still inside the operator's gate: its Works keep the device until done.
    hold_until_done(*hook.gate, *hook.tracker, *stack, op.schema().returns().size(), std::move(collective));
  }
}

void hook_fallback(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  const c10::DispatchKeySet next = keys & detail::kKeysAfterHook;
  const ActiveHook* hook = detail::g_active_hook.load(std::memory_order_acquire);
  if (hook == nullptr || !touches_device(*hook, op, *stack)) {
    op.redispatchBoxed(next, stack);
    return;
  }
  run_hooked(*hook, op, next, stack);
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
  detail::g_active_hook.store(&slot, std::memory_order_release);
}

void deactivate_op_hook() { detail::g_active_hook.store(nullptr, std::memory_order_release); }
bool op_hook_active() { return detail::g_active_hook.load(std::memory_order_acquire) != nullptr; }

void attach_current_thread() { c10::impl::tls_set_dispatch_key_included(kHookKey, true); }
void detach_current_thread() { c10::impl::tls_set_dispatch_key_included(kHookKey, false); }
bool current_thread_attached() { return c10::impl::tls_is_dispatch_key_included(kHookKey); }

int current_op_depth() { return t_op_depth; }

void region_enter(Gate& gate) {
  if (t_op_depth == 0) gate.enter();
  ++t_op_depth;
}

bool region_try_enter(Gate& gate) {
  if (t_op_depth == 0 && !gate.try_enter()) return false;
  ++t_op_depth;
  return true;
}

void region_exit(Gate& gate) {
  if (t_op_depth <= 0) return;
  --t_op_depth;
  if (t_op_depth == 0) gate.exit();
}

}  // namespace acb::torch_hook
