#include "alloc/cuda_api.h"

#include <dlfcn.h>

#include <cerrno>
#include <cstdlib>

#include "alloc/driver.h"

namespace acb::alloc {

std::string CudaApi::default_library() {
  const char* name = std::getenv("ACB_CUDA_LIBRARY");
  return name != nullptr && *name != '\0' ? name : "libcuda.so.1";
}

CudaApi CudaApi::load(const std::string& library) {
  void* handle = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    throw DriverError("dlopen", ENOENT,
                      "dlopen(" + library +
                          ") failed: " + (why != nullptr ? why : "unknown error") +
                          " (no NVIDIA driver installed? set ACB_CUDA_LIBRARY to its path)");
  }
  CudaApi api;
#define ACB_CUDA_RESOLVE(name, symbol)                                      \
  api.name = reinterpret_cast<decltype(api.name)>(::dlsym(handle, symbol)); \
  if (api.name == nullptr)                                                  \
    throw DriverError("dlsym", ENOSYS,                                      \
                      "dlsym(" + library +                                  \
                          ", " symbol                                       \
                          ") failed: not a CUDA driver, or one too old "    \
                          "(acb needs CUDA 11.0 or newer)");
  ACB_CUDA_FUNCTIONS(ACB_CUDA_RESOLVE)
#undef ACB_CUDA_RESOLVE
#define ACB_CUDA_RESOLVE_OPTIONAL(name, symbol) \
  api.name = reinterpret_cast<decltype(api.name)>(::dlsym(handle, symbol));
  ACB_CUDA_OPTIONAL_FUNCTIONS(ACB_CUDA_RESOLVE_OPTIONAL)
#undef ACB_CUDA_RESOLVE_OPTIONAL
  return api;
}

std::string CudaApi::error_text(CUresult result) const {
  const char* text = nullptr;
  const char* name = nullptr;
  if (cuGetErrorString == nullptr || cuGetErrorString(result, &text) != CUDA_SUCCESS ||
      text == nullptr)
    text = "unknown error";
  if (cuGetErrorName == nullptr || cuGetErrorName(result, &name) != CUDA_SUCCESS || name == nullptr)
    name = "CUresult";
  return std::string(text) + " (" + name + "=" + std::to_string(static_cast<int>(result)) + ")";
}

}  // namespace acb::alloc
