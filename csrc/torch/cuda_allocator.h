// The allocation function acb gives torch's CUDAPluggableAllocator
// (torch._C._cuda_customAllocator(malloc, free) takes their addresses; free
// is acb_alloc_free of the C ABI, pluggable_allocator.h).
//
// torch wraps whatever its alloc_fn returns without a check
// (CUDAPluggableAllocator::malloc), so NULL would become a tensor at address
// 0 and an illegal-address fault later. This function therefore never returns
// NULL for a non-zero size: when the arena finds no memory (after releasing
// its cached segments and asking the broker for room through its
// out-of-memory handler, Arena::malloc) it throws c10::OutOfMemoryError,
// which torch's Python bindings raise as torch.cuda.OutOfMemoryError, with
// the arena's message: requested, free and total bytes, and what was tried.
// Any other failure (a CUDA driver error) is a c10::Error (RuntimeError).
#pragma once

#include <cstddef>

namespace acb::torch_hook {

/// torch's alloc_fn: `size` bytes on `device` for use on `stream` (a
/// cudaStream_t). NULL only for size 0; throws otherwise (see above).
void* cuda_malloc(std::size_t size, int device, void* stream);

}  // namespace acb::torch_hook
