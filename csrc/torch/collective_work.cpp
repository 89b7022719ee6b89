// Holding the gate until a c10d Work is done (see collective_work.h).
#include "torch/collective_work.h"

#include <exception>
#include <memory>
#include <thread>
#include <utility>

#include <ATen/core/ivalue.h>
#include <ATen/core/class_type.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/distributed/c10d/Work.hpp>

namespace acb::torch_hook {

namespace {
/// The qualified name of c10d::Work's TorchScript class (ProcessGroup.cpp's registration).
constexpr const char* kWorkClass = "__torch__.torch.classes.c10d.Work";

c10::intrusive_ptr<c10d::Work> work_of(const c10::IValue& value) {
  if (!value.isObject()) return {};
  const c10::ivalue::Object& object = value.toObjectRef();
  if (object.type()->name()->qualifiedName() != kWorkClass || object.slots().size() != 1) return {};
  const c10::IValue& slot = object.getSlot(0);
  if (!slot.isCapsule()) return {};
  return c10::static_intrusive_pointer_cast<c10d::Work>(slot.toCapsule());
}

void tensors_of(const c10::IValue& value, std::vector<at::Tensor>& out) {
  if (value.isTensor()) {
    out.push_back(value.toTensor());
  } else if (value.isTensorList()) {
    for (const at::Tensor& t : value.toTensorList()) out.push_back(t);
  } else if (value.isList()) {
    for (const c10::IValue& element : value.toListRef()) tensors_of(element, out);
  }
}

/// Marks the tensors and lets the gate's unit go, exactly once, whichever
/// thread completes the work. Never throws (it runs in a backend callback).
class PendingWork {
 public:
  PendingWork(Gate& gate, const DirtyTracker& tracker, std::vector<at::Tensor> tensors)
      : gate_(gate), tracker_(tracker), tensors_(std::move(tensors)) {
    gate_.enter_while_held();
  }
  PendingWork(const PendingWork&) = delete;
  PendingWork& operator=(const PendingWork&) = delete;
  ~PendingWork() { done(); }

  void done() noexcept {
    if (released_) return;
    released_ = true;
    try {
      for (const at::Tensor& t : tensors_) tracker_.mark_tensor(t);
    } catch (...) {
      // Marking failed (cannot, short of memory): the unit must go all the
      // same, or the process could never yield again.
    }
    tensors_.clear();
    gate_.exit();
  }

 private:
  Gate& gate_;
  const DirtyTracker& tracker_;
  std::vector<at::Tensor> tensors_;
  bool released_ = false;
};
}  // namespace

std::vector<at::Tensor> collective_tensors(const c10::OperatorHandle& op, const torch::jit::Stack& stack) {
  std::vector<at::Tensor> out;
  const std::size_t nargs = op.schema().arguments().size();
  if (stack.size() < nargs) return out;
  for (std::size_t i = stack.size() - nargs; i < stack.size(); ++i) tensors_of(stack[i], out);
  return out;
}

namespace {
/// Where an operator's `outputs` results start on the stack after its call.
std::size_t first_output(const torch::jit::Stack& stack, std::size_t outputs) {
  return stack.size() >= outputs ? stack.size() - outputs : 0;
}
}  // namespace

void wait_functional_outputs(const torch::jit::Stack& stack, std::size_t outputs) {
  static const c10::OperatorHandle wait_tensor =
      c10::Dispatcher::singleton().findSchemaOrThrow("_c10d_functional::wait_tensor", "");
  static const auto typed = wait_tensor.typed<at::Tensor(const at::Tensor&)>();
  std::vector<at::Tensor> tensors;
  for (std::size_t i = first_output(stack, outputs); i < stack.size(); ++i) tensors_of(stack[i], tensors);
  for (const at::Tensor& t : tensors) (void)typed.call(t);
}

void hold_until_done(Gate& gate, const DirtyTracker& tracker, const torch::jit::Stack& stack, std::size_t outputs,
                     std::vector<at::Tensor> tensors) {
  for (std::size_t i = first_output(stack, outputs); i < stack.size(); ++i) {
    c10::intrusive_ptr<c10d::Work> work = work_of(stack[i]);
    if (!work) continue;
    auto pending = std::make_shared<PendingWork>(gate, tracker, tensors);
    c10::intrusive_ptr<c10::ivalue::Future> future;
    try {
      future = work->getFuture();
    } catch (const std::exception&) {
      // This backend's Work has no future: wait for it on a thread of its own
      // (waiting here would deadlock a recv posted before its send).
    }
    if (future) {
      future->addCallback([pending](c10::ivalue::Future&) { pending->done(); }, /*uses_future=*/false);
    } else {
      std::thread([work, pending] {
        try {
          work->wait();
        } catch (...) {
          // Failed work wrote what it wrote: marked and let go below.
        }
        pending->done();
      }).detach();
    }
  }
}

}  // namespace acb::torch_hook
