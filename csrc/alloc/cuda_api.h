// The CUDA driver API as a table of function pointers, filled from
// libcuda.so.1 with dlopen/dlsym at run time. acb never links libcuda: the
// library loads, and every non-GPU test runs, on machines without a GPU or
// driver. <cuda.h> is used for types and constants only.
//
// Symbol names: cuda.h renames several entry points with macros (e.g.
// cuMemGetInfo -> cuMemGetInfo_v2, cuMemcpyHtoDAsync -> cuMemcpyHtoDAsync_v2).
// dlsym needs the exported name, so the table spells out the versioned names
// the header maps to (per-thread default stream variants are not used).
//
// Only cuda_*.cpp and the broker's device probe include this header (the
// library acb_cuda_api); the rest of acb sees driver.h.
//
// Thread-safety: the table is immutable once loaded.
#pragma once

#include <cuda.h>

#include <string>

namespace acb::alloc {

struct CudaApi {
#define ACB_CUDA_FUNCTIONS(X)                                       \
  X(cuInit, "cuInit")                                               \
  X(cuDriverGetVersion, "cuDriverGetVersion")                       \
  X(cuGetErrorString, "cuGetErrorString")                           \
  X(cuGetErrorName, "cuGetErrorName")                               \
  X(cuDeviceGet, "cuDeviceGet")                                     \
  X(cuDeviceGetCount, "cuDeviceGetCount")                           \
  X(cuDeviceGetAttribute, "cuDeviceGetAttribute")                   \
  X(cuDeviceTotalMem, "cuDeviceTotalMem_v2")                        \
  X(cuDeviceGetUuid, "cuDeviceGetUuid_v2")                          \
  X(cuDeviceCanAccessPeer, "cuDeviceCanAccessPeer")                 \
  X(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain")           \
  X(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2")      \
  X(cuCtxGetCurrent, "cuCtxGetCurrent")                             \
  X(cuCtxSetCurrent, "cuCtxSetCurrent")                             \
  X(cuCtxSynchronize, "cuCtxSynchronize")                           \
  X(cuMemGetInfo, "cuMemGetInfo_v2")                                \
  X(cuMemGetAllocationGranularity, "cuMemGetAllocationGranularity") \
  X(cuMemAddressReserve, "cuMemAddressReserve")                     \
  X(cuMemAddressFree, "cuMemAddressFree")                           \
  X(cuMemCreate, "cuMemCreate")                                     \
  X(cuMemRelease, "cuMemRelease")                                   \
  X(cuMemMap, "cuMemMap")                                           \
  X(cuMemSetAccess, "cuMemSetAccess")                               \
  X(cuMemUnmap, "cuMemUnmap")                                       \
  X(cuMemHostAlloc, "cuMemHostAlloc")                               \
  X(cuMemFreeHost, "cuMemFreeHost")                                 \
  X(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2")                      \
  X(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2")                      \
  X(cuStreamCreate, "cuStreamCreate")                               \
  X(cuStreamDestroy, "cuStreamDestroy_v2")                          \
  X(cuStreamSynchronize, "cuStreamSynchronize")                     \
  X(cuEventCreate, "cuEventCreate")                                 \
  X(cuEventDestroy, "cuEventDestroy_v2")                            \
  X(cuEventRecord, "cuEventRecord")                                 \
  X(cuEventQuery, "cuEventQuery")                                   \
  X(cuEventSynchronize, "cuEventSynchronize")

  // Optional entry points: resolved when libcuda exports them, null
  // otherwise (callers fall back). cuMemcpyBatchAsync came with CUDA 12.8
  // (with a failIdx argument); CUDA 13's header maps the name to
  // cuMemcpyBatchAsync_v2, without it, which is the one used: only when
  // acb is built with CUDA 13 headers, and only drivers of 13.0 or newer
  // export it (older ones take the per-range copies).
#if CUDA_VERSION >= 13000
#define ACB_CUDA_OPTIONAL_FUNCTIONS(X) X(cuMemcpyBatchAsync, "cuMemcpyBatchAsync_v2")
#else
#define ACB_CUDA_OPTIONAL_FUNCTIONS(X)
#endif

  // decltype of the header's declaration (the macro picks the versioned one),
  // so a signature mismatch with the exported symbol cannot creep in.
#define ACB_CUDA_POINTER(name, symbol) decltype(&::name) name = nullptr;
  ACB_CUDA_FUNCTIONS(ACB_CUDA_POINTER)
  ACB_CUDA_OPTIONAL_FUNCTIONS(ACB_CUDA_POINTER)
#undef ACB_CUDA_POINTER

  /// Opens `library` (libcuda.so.1 unless ACB_CUDA_LIBRARY names another) and
  /// resolves every function (the optional ones where present). Throws DriverError (call "dlopen" or "dlsym")
  /// naming the library and the missing symbol. The library is never closed:
  /// CUDA objects may outlive any one driver until process exit.
  static CudaApi load(const std::string& library);
  /// The library load() opens by default: $ACB_CUDA_LIBRARY or libcuda.so.1.
  static std::string default_library();

  /// "out of memory (CUDA_ERROR_OUT_OF_MEMORY=2)".
  std::string error_text(CUresult result) const;
};

}  // namespace acb::alloc
