// ArenaCpuAllocator: emulation mode's bridge from torch to the arena. With a
// CPU build of torch and ACB_EMULATED_DEVICE set, the brokered "device" is
// the emulated arena in host memory: installed as torch's CPU allocator (at a
// high priority), every CPU tensor allocated afterwards lives in the arena,
// is gated by the op hook, and is offloaded (pages made inaccessible) when
// the broker gives the device to another process. Tensors allocated before
// installation keep their own deleters and memory.
//
// An allocation made outside any operator (e.g. a scalar wrapped into a
// tensor by the Python binding) holds the gate while the arena allocates, so
// it waits for the lease and never runs beside an offload: the block is
// resident when it is handed out and no segment is created on a device the
// process does not hold. (The arena marks every fresh block written.) The
// caller's own write that follows, outside any operator, is not gated: see
// docs/torch.md, "Hazards".
//
// Thread-safety: thread-safe (the arena locks).
#pragma once

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include "alloc/arena.h"
#include "torch/gate.h"

namespace acb::torch_hook {

class ArenaCpuAllocator final : public c10::Allocator {
 public:
  ArenaCpuAllocator(alloc::Arena& arena, Gate& gate);

  c10::DataPtr allocate(std::size_t bytes) override;
  c10::DeleterFnPtr raw_deleter() const override;
  void copy_data(void* dest, const void* src, std::size_t count) const override;

  /// Makes this torch's CPU allocator (remembering the previous one), or puts the previous one back.
  void install();
  void uninstall();

 private:
  alloc::Arena& arena_;
  Gate& gate_;
  c10::Allocator* previous_ = nullptr;
};

}  // namespace acb::torch_hook
