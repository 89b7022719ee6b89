// ArenaCpuAllocator (see arena_cpu_allocator.h). The deleter is a plain
// function, so the arena it frees into is a process global set once.
#include "torch/arena_cpu_allocator.h"

#include <atomic>
#include <cstring>

#include <c10/util/Exception.h>

#include "torch/op_hook.h"

namespace acb::torch_hook {

namespace {
// Torch's own CPU allocator registers at priority 0; ours wins and can be undone.
constexpr std::uint8_t kPriority = 100;
std::atomic<alloc::Arena*> g_arena{nullptr};

void arena_delete(void* ptr) {
  if (ptr == nullptr) return;
  alloc::Arena* arena = g_arena.load(std::memory_order_acquire);
  if (arena != nullptr && arena->owns(ptr)) {
    arena->free(ptr, nullptr);
  } else {
    c10::GetDefaultCPUAllocator()->raw_deleter()(ptr);  // allocated outside any operator (see allocate())
  }
}
}  // namespace

ArenaCpuAllocator::ArenaCpuAllocator(alloc::Arena& arena) : arena_(arena) {
  alloc::Arena* expected = nullptr;
  if (!g_arena.compare_exchange_strong(expected, &arena) && expected != &arena) {
    TORCH_CHECK(false, "acb: the emulated CPU allocator is already bound to another arena (device ",
                expected->device(), ")");
  }
}

c10::DataPtr ArenaCpuAllocator::allocate(std::size_t bytes) {
  if (bytes == 0) return {nullptr, nullptr, &arena_delete, c10::Device(c10::DeviceType::CPU)};
  // Outside any operator (a scalar the Python binding wraps into a tensor, a
  // storage made from Python) the caller fills the memory itself after this
  // returns, with no operator in flight: in the arena an offload could run
  // between the two and the fill would land on memory being copied out or
  // unmapped. Such memory comes from torch's own CPU allocator instead: it is
  // not the brokered device's, so no offload ever touches it.
  if (current_op_depth() == 0) return c10::GetDefaultCPUAllocator()->allocate(bytes);
  void* ptr = nullptr;
  try {
    ptr = arena_.malloc(bytes, nullptr);
  } catch (const alloc::OutOfMemory& e) {
    TORCH_CHECK_WITH(OutOfMemoryError, false, "acb: emulated device out of memory: allocating ", bytes,
                     " bytes failed: ", e.what());
  }
  return {ptr, ptr, &arena_delete, c10::Device(c10::DeviceType::CPU)};
}

c10::DeleterFnPtr ArenaCpuAllocator::raw_deleter() const { return &arena_delete; }

void ArenaCpuAllocator::copy_data(void* dest, const void* src, std::size_t count) const {
  if (count > 0) std::memcpy(dest, src, count);
}

void ArenaCpuAllocator::install() {
  if (c10::GetCPUAllocator() == this) return;
  previous_ = c10::GetCPUAllocator();
  c10::SetCPUAllocator(this, kPriority);
}

void ArenaCpuAllocator::uninstall() {
  if (previous_ == nullptr || c10::GetCPUAllocator() != this) return;
  c10::SetCPUAllocator(previous_, kPriority);
  previous_ = nullptr;
}

}  // namespace acb::torch_hook
