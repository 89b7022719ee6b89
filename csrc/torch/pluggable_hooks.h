// PluggableAllocatorHooks: gives torch's CUDAPluggableAllocator acb's
// record_stream and empty_cache callbacks.
//
// torch forwards Tensor.record_stream (and the record_stream calls of its own
// C++: NCCL process groups, pinned-memory copies) and torch.cuda.empty_cache
// to a pluggable allocator only through callbacks set with
// CUDAPluggableAllocator::set_record_stream_fn / set_reset_fn, which torch
// exposes to C++ only (torch/csrc/cuda/CUDAPluggableAllocator.h, 2.x). Without
// the first, a block freed while a side stream still reads it would be reused
// at once: silent corruption. acb._C is built against whichever torch is
// installed, often a CPU build without libtorch_cuda.so, so these are not
// linked: they are looked up by their (Itanium-mangled) names in the
// libtorch_cuda.so torch has already loaded, together with
// getCurrentAllocator(), which returns the allocator
// torch.cuda.memory.change_current_allocator installed.
//
// The callbacks throw (std::runtime_error naming the pointer) where the C ABI
// (pluggable_allocator.h) would only print: a record_stream acb could not
// honour must fail the op that asked for it.
//
// Not thread-safe against torch using the allocator at the same time: call it
// right after change_current_allocator, before any CUDA work.
#pragma once

#include <string>
#include <vector>

namespace acb::torch_hook {

/// The libraries searched for torch's symbols (already loaded ones only:
/// dlopen with RTLD_NOLOAD); a dlopen handle also searches the dependencies.
std::vector<std::string> default_torch_cuda_libraries();

/// "" when every symbol the hooks need is found in one of `libraries`, else
/// why not (the libraries and the missing symbol). Changes nothing.
std::string pluggable_hooks_missing(const std::vector<std::string>& libraries);

/// Sets the record_stream and reset (empty_cache) callbacks on torch's current
/// pluggable allocator. Throws std::runtime_error with the reason when a
/// symbol is missing or torch has no current pluggable allocator.
void install_pluggable_hooks(const std::vector<std::string>& libraries);

}  // namespace acb::torch_hook
