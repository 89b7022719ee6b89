// PluggableAllocatorHooks (see pluggable_hooks.h). The declarations below
// mirror torch/csrc/cuda/CUDAPluggableAllocator.h: the symbol names are what
// g++ and clang mangle those declarations to, and the calls through them use
// the Itanium C++ ABI as torch's own callers do (the object as the first
// argument, a std::function and a returned std::shared_ptr in memory). Only
// the layout of std::function and std::shared_ptr matters, not their template
// arguments, and neither depends on _GLIBCXX_USE_CXX11_ABI.
#include "torch/pluggable_hooks.h"

#include <dlfcn.h>

#include <cinttypes>
#include <cstdio>
#include <functional>
#include <memory>
#include <stdexcept>

#include "alloc/process_arenas.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace acb::torch_hook {
namespace {

using RecordStreamFn = std::function<void(void*, CUstream_st*)>;
using ResetFn = std::function<void()>;

constexpr const char* kGetCurrentAllocator =
    "_ZN5torch4cuda22CUDAPluggableAllocator19getCurrentAllocatorEv";
constexpr const char* kSetRecordStreamFn =
    "_ZN5torch4cuda22CUDAPluggableAllocator22CUDAPluggableAllocator20set_record_stream_"
    "fnESt8functionIFvPvP11CUstream_stEE";
constexpr const char* kSetResetFn =
    "_ZN5torch4cuda22CUDAPluggableAllocator22CUDAPluggableAllocator12set_reset_fnESt8functionIFvvEE";

struct Symbols {
  std::shared_ptr<void> (*get_current_allocator)() = nullptr;
  void (*set_record_stream_fn)(void* self, RecordStreamFn fn) = nullptr;
  void (*set_reset_fn)(void* self, ResetFn fn) = nullptr;
};

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

/// Fills `symbols` from the first loaded library that has all three; "" or why not.
std::string resolve(const std::vector<std::string>& libraries, Symbols& symbols) {
  std::vector<std::string> not_loaded;
  std::string lacking;
  for (const auto& library : libraries) {
    void* handle = ::dlopen(library.c_str(), RTLD_NOW | RTLD_NOLOAD);
    if (handle == nullptr) {
      not_loaded.push_back(library);
      continue;
    }
    void* get = ::dlsym(handle, kGetCurrentAllocator);
    void* record = ::dlsym(handle, kSetRecordStreamFn);
    void* reset = ::dlsym(handle, kSetResetFn);
    ::dlclose(handle);  // RTLD_NOLOAD took a reference; torch keeps the library loaded
    if (get != nullptr && record != nullptr && reset != nullptr) {
      symbols.get_current_allocator = reinterpret_cast<decltype(symbols.get_current_allocator)>(get);
      symbols.set_record_stream_fn = reinterpret_cast<decltype(symbols.set_record_stream_fn)>(record);
      symbols.set_reset_fn = reinterpret_cast<decltype(symbols.set_reset_fn)>(reset);
      return "";
    }
    if (!lacking.empty()) lacking += "; ";
    lacking += library + " lacks " +
               (get == nullptr ? kGetCurrentAllocator
                               : record == nullptr ? kSetRecordStreamFn : kSetResetFn);
  }
  std::string why;
  if (!not_loaded.empty())
    why = joined(not_loaded) + (not_loaded.size() == 1 ? " is" : " are") +
          " not loaded in this process (a CPU-only torch?)";
  if (!lacking.empty())
    why += (why.empty() ? "" : "; ") + lacking + " (torch::cuda::CUDAPluggableAllocator changed?)";
  return why;
}

std::string hex(const void* ptr) {
  char text[32];
  std::snprintf(text, sizeof text, "0x%" PRIxPTR, reinterpret_cast<std::uintptr_t>(ptr));
  return text;
}

void record_stream(void* ptr, CUstream_st* stream) {
  if (ptr == nullptr) return;
  alloc::Arena* arena = alloc::process_arena_owning(ptr);
  if (arena == nullptr)
    throw std::runtime_error("acb: record_stream(" + hex(ptr) + ", stream " + hex(stream) +
                             "): not memory of any acb arena");
  arena->record_stream(ptr, stream);
}

void empty_cache() {
  alloc::for_each_process_arena([](alloc::Arena& arena) { arena.empty_cache(); });
}

}  // namespace

std::vector<std::string> default_torch_cuda_libraries() {
  return {"libtorch_cuda.so", "libtorch.so"};
}

std::string pluggable_hooks_missing(const std::vector<std::string>& libraries) {
  Symbols symbols;
  return resolve(libraries, symbols);
}

void install_pluggable_hooks(const std::vector<std::string>& libraries) {
  Symbols symbols;
  if (std::string why = resolve(libraries, symbols); !why.empty())
    throw std::runtime_error("acb: cannot give torch's CUDA pluggable allocator acb's record_stream "
                             "and empty_cache: " + why);
  std::shared_ptr<void> allocator = symbols.get_current_allocator();
  if (!allocator)
    throw std::runtime_error("acb: torch has no current CUDA pluggable allocator to give "
                             "record_stream and empty_cache to (install acb's first)");
  symbols.set_record_stream_fn(allocator.get(), RecordStreamFn(&record_stream));
  symbols.set_reset_fn(allocator.get(), ResetFn(&empty_cache));
}

}  // namespace acb::torch_hook
