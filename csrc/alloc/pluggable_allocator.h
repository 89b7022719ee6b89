// The C ABI of libacb_alloc.so, in the shape torch's CUDAPluggableAllocator
// loads (torch/csrc/cuda/CUDAPluggableAllocator.h:
//   alloc_fn(size_t size, int device, cudaStream_t stream)
//   free_fn(void* ptr, size_t size, int device, cudaStream_t stream)),
// e.g.
//   torch.cuda.memory.CUDAPluggableAllocator(path, "acb_alloc_malloc", "acb_alloc_free")
// Each call goes to the process registry's arena of `device`
// (process_arenas.h). None of these functions throws: errors are printed to
// stderr; acb_alloc_malloc returns NULL on failure (torch then raises its
// out-of-memory error), after printing the OutOfMemory message with sizes.
#pragma once

#include <sys/types.h>  // ssize_t

#ifdef __cplusplus
extern "C" {
#endif

/// Allocates `size` bytes on `device` for use on `stream` (a cudaStream_t). NULL on failure or size
/// 0.
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
