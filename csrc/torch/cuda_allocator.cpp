// cuda_malloc (see cuda_allocator.h).
#include "torch/cuda_allocator.h"

#include <c10/util/Exception.h>

#include "alloc/process_arenas.h"

namespace acb::torch_hook {

void* cuda_malloc(std::size_t size, int device, void* stream) {
  if (size == 0) return nullptr;
  try {
    void* ptr = alloc::process_arena(device).malloc(size, stream);
    TORCH_CHECK(ptr != nullptr, "acb: the arena of device ", device, " returned no memory for ", size,
                " bytes");
    return ptr;
  } catch (const alloc::OutOfMemory& e) {
    TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory (acb): ", e.what());
  } catch (const c10::Error&) {
    throw;
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "acb: allocating ", size, " bytes on CUDA device ", device, " failed: ", e.what());
  }
}

}  // namespace acb::torch_hook
