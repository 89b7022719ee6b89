// The C ABI of libacb_alloc.so, in the shape of torch's CUDAPluggableAllocator
// callbacks (torch/csrc/cuda/CUDAPluggableAllocator.h:
//   alloc_fn(size_t size, int device, cudaStream_t stream)
//   free_fn(void* ptr, size_t size, int device, cudaStream_t stream)),
// for C callers and tools. Each call goes to the process registry's arena of
// `device` (process_arenas.h). None of these functions throws: errors are
// printed to stderr and acb_alloc_malloc returns NULL on failure.
//
// torch itself is given acb_alloc_free only: torch does not check what its
// alloc_fn returns (NULL would become a tensor at address 0), so its alloc_fn
// is acb._C's cuda_malloc, which raises torch's out-of-memory error
// (csrc/torch/cuda_allocator.h), and its record_stream and empty_cache
// callbacks, which throw, are set by csrc/torch/pluggable_hooks.h.
#pragma once

#include <sys/types.h>  // ssize_t

#ifdef __cplusplus
extern "C" {
#endif

/// Allocates `size` bytes on `device` for use on `stream` (a cudaStream_t).
/// NULL on failure or for size 0.
void* acb_alloc_malloc(ssize_t size, int device, void* stream);
/// Frees `ptr` (NULL is a no-op); `size` is what torch passed to malloc (unused).
void acb_alloc_free(void* ptr, ssize_t size, int device, void* stream);
/// Releases every fully free segment of every arena of the process.
void acb_alloc_empty_cache(void);
/// Notes that `ptr` is also used on `stream` (torch's record_stream).
void acb_alloc_record_stream(void* ptr, void* stream);

#ifdef __cplusplus
}
#endif
