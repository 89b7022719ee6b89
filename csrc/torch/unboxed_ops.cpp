// Unboxed kernels on the hook's key for the most frequent operators
// (unboxed_op_list.h). They do what the boxed fallback does (op_hook.cpp):
// gate the outermost operator, hide the hook from nested ones, mark the
// written arguments; but torch calls them with the operator's own C++
// signature, so no argument is boxed into a stack and unboxed again. With
// the lease held that is the difference between ~25 and ~150 ns per
// operator on the machine the figures in docs/architecture.md come from.
//
// One template instantiation per at::_ops struct; which arguments are
// written comes from the schema, analysed once per operator, like the
// fallback's.
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <ATen/core/ATen_fwd.h>
#include <ATen/core/IListRef.h>
#include <torch/library.h>

#include "torch/hook_state.h"
#include "torch/op_hook.h"
#include "torch/unboxed_op_list.h"

namespace acb::torch_hook {

namespace {
using detail::ActiveHook;

// Whether an argument puts the operator on the brokered device: tensors,
// tensor lists and devices can; other argument types cannot.
template <class T>
bool is_cuda_arg(const T&) {
  return false;
}
bool is_cuda_arg(const at::Tensor& t) { return t.defined() && t.is_cuda(); }
bool is_cuda_arg(const std::optional<at::Tensor>& t) { return t.has_value() && is_cuda_arg(*t); }
template <class TensorRange>
bool any_cuda(const TensorRange& list) {
  for (const at::Tensor& t : list) {
    if (is_cuda_arg(t)) return true;
  }
  return false;
}
bool is_cuda_arg(const at::TensorList& list) { return any_cuda(list); }
bool is_cuda_arg(const at::ITensorListRef& list) { return any_cuda(list); }
bool is_cuda_arg(const c10::Device& device) { return device.is_cuda(); }
bool is_cuda_arg(const std::optional<c10::Device>& device) { return device.has_value() && device->is_cuda(); }

// Marks a written argument's storages; types that hold no tensor mark nothing.
template <class T>
void mark_arg(const DirtyTracker&, const T&) {}
void mark_arg(const DirtyTracker& tracker, const at::Tensor& t) { tracker.mark_tensor(t); }
void mark_arg(const DirtyTracker& tracker, const std::optional<at::Tensor>& t) {
  if (t.has_value()) tracker.mark_tensor(*t);
}
void mark_arg(const DirtyTracker& tracker, const at::TensorList& list) {
  for (const at::Tensor& t : list) tracker.mark_tensor(t);
}

template <class Op, class Signature = typename Op::schema>
struct UnboxedHook;

template <class Op, class Ret, class... Args>
struct UnboxedHook<Op, Ret(Args...)> {
  static_assert(sizeof...(Args) <= 64, "written_arg_mask covers 64 arguments");

  static Ret call(c10::DispatchKeySet keys, Args... args) {
    const c10::DispatchKeySet next = keys & detail::kKeysAfterHook;
    const ActiveHook* hook = detail::g_active_hook.load(std::memory_order_acquire);
    if (hook == nullptr || !(hook->gate_all_ops || (is_cuda_arg(args) || ...))) {
      return Op::redispatch(next, args...);
    }
    detail::OpScope scope(detail::gate_if_outermost(*hook));
    // Arguments are passed on as lvalues, never moved: they are marked after
    // the call. Marked when the kernel throws too, which may have written part.
    try {
      if constexpr (std::is_void_v<Ret>) {
        Op::redispatch(next, args...);
        mark_written(*hook->tracker, args...);
      } else {
        Ret result = Op::redispatch(next, args...);
        mark_written(*hook->tracker, args...);
        return result;
      }
    } catch (...) {
      mark_written(*hook->tracker, args...);
      throw;
    }
  }

  static void mark_written(const DirtyTracker& tracker, const std::remove_reference_t<Args>&... args) {
    static const std::uint64_t mask = DirtyTracker::written_arg_mask(Op::name, Op::overload_name);
    if (mask == 0) return;  // most operators: only fresh outputs, marked by the arena
    std::uint64_t bit = 1;
    ((mask & bit ? mark_arg(tracker, args) : void(), bit <<= 1), ...);
  }

  /// "add_.Tensor" for aten::add_.Tensor: the name torch::Library::impl takes.
  static std::string registration_name() {
    std::string name = Op::name;
    const std::string prefix = "aten::";
    if (name.rfind(prefix, 0) == 0) name.erase(0, prefix.size());
    if (*Op::overload_name != '\0') name += std::string(".") + Op::overload_name;
    return name;
  }
};
}  // namespace

std::vector<std::string> unboxed_hook_operators() {
#define ACB_UNBOXED_NAME(op) UnboxedHook<at::_ops::op>::registration_name(),
  return {ACB_UNBOXED_OPS(ACB_UNBOXED_NAME)};
#undef ACB_UNBOXED_NAME
}

TORCH_LIBRARY_IMPL(aten, TESTING_ONLY_GenericMode, m) {
#define ACB_REGISTER_UNBOXED(op) \
  m.impl(UnboxedHook<at::_ops::op>::registration_name().c_str(), TORCH_FN(UnboxedHook<at::_ops::op>::call));
  ACB_UNBOXED_OPS(ACB_REGISTER_UNBOXED)
#undef ACB_REGISTER_UNBOXED
}

}  // namespace acb::torch_hook
