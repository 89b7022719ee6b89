// ArenaCpuAllocator: emulation mode's bridge from torch to the arena. With a
// CPU build of torch and ACB_EMULATED_DEVICE set, the brokered "device" is
// the emulated arena in host memory: installed as torch's CPU allocator (at a
// high priority), every CPU tensor allocated afterwards lives in the arena,
// is gated by the op hook, and is offloaded (pages made inaccessible) when
// the broker gives the device to another process. Tensors allocated before
// installation keep their own deleters and memory.
//
// Only allocations made inside an operator (or acb.region()) come from the
// arena: they run with the lease held, and the operator's writes are in it.
// An allocation outside any operator (a scalar the Python binding wraps into
// a tensor, a storage made from Python) is filled by its caller after it
// returns, with no operator in flight, so an offload could land in between:
// it comes from torch's default CPU allocator, which no offload touches.
// (The arena marks every fresh block written.)
//
// Thread-safety: thread-safe (the arena locks).
#pragma once

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include "alloc/arena.h"

namespace acb::torch_hook {

class ArenaCpuAllocator final : public c10::Allocator {
 public:
  explicit ArenaCpuAllocator(alloc::Arena& arena);

  c10::DataPtr allocate(std::size_t bytes) override;
  c10::DeleterFnPtr raw_deleter() const override;
  void copy_data(void* dest, const void* src, std::size_t count) const override;

  /// Makes this torch's CPU allocator (remembering the previous one), or puts the previous one back.
  void install();
  void uninstall();

 private:
  alloc::Arena& arena_;
  c10::Allocator* previous_ = nullptr;
};

}  // namespace acb::torch_hook
