// A stand-in for the part of libtorch_cuda.so that pluggable_hooks.cpp looks
// up: torch::cuda::CUDAPluggableAllocator's getCurrentAllocator(),
// set_record_stream_fn and set_reset_fn, declared as in
// torch/csrc/cuda/CUDAPluggableAllocator.h so that they get torch's mangled
// names. fake_torch_record_stream / fake_torch_empty_cache call the
// callbacks as CUDAPluggableAllocator::recordStream / emptyCache do (nothing
// when none is set, which they report with 0).
//
// Built twice: FAKE_TORCH_WITHOUT_RECORD_STREAM leaves set_record_stream_fn
// out, as a torch that lacks it would.
#include <functional>
#include <memory>

struct CUstream_st;

namespace torch::cuda::CUDAPluggableAllocator {

struct CUDAPluggableAllocator {
  void set_record_stream_fn(std::function<void(void* ptr, CUstream_st* stream)> fn);
  void set_reset_fn(std::function<void()> fn);
  std::function<void(void*, CUstream_st*)> record_stream_fn_;
  std::function<void()> reset_fn_;
};

std::shared_ptr<CUDAPluggableAllocator> current;

std::shared_ptr<CUDAPluggableAllocator> getCurrentAllocator() { return current; }

#ifndef FAKE_TORCH_WITHOUT_RECORD_STREAM
void CUDAPluggableAllocator::set_record_stream_fn(std::function<void(void*, CUstream_st*)> fn) {
  record_stream_fn_ = std::move(fn);
}
#endif
void CUDAPluggableAllocator::set_reset_fn(std::function<void()> fn) { reset_fn_ = std::move(fn); }

}  // namespace torch::cuda::CUDAPluggableAllocator

namespace fake = torch::cuda::CUDAPluggableAllocator;

extern "C" {

/// changeCurrentAllocator: a fresh allocator without callbacks (install=1), or none (0).
void fake_torch_change_current_allocator(int install) {
  fake::current = install ? std::make_shared<fake::CUDAPluggableAllocator>() : nullptr;
}

int fake_torch_record_stream(void* ptr, void* stream) {
  if (!fake::current || !fake::current->record_stream_fn_) return 0;
  fake::current->record_stream_fn_(ptr, static_cast<CUstream_st*>(stream));
  return 1;
}

int fake_torch_empty_cache() {
  if (!fake::current || !fake::current->reset_fn_) return 0;
  fake::current->reset_fn_();
  return 1;
}

}  // extern "C"
