// A stand-in for libcuda.so.1, for testing the CUDA driver on machines
// without a GPU (loaded through ACB_CUDA_LIBRARY). One device of 64 MiB with
// a 2 MiB granularity, backed by host memory: allocations are memfds mapped
// at reserved addresses, copies are memcpy, streams and events are tokens.
//
// It includes <cuda.h> and defines each entry point under its header name, so
// the exported symbols are exactly those cuda.h maps to (cuMemGetInfo ->
// cuMemGetInfo_v2, ...): the driver's dlsym table must match them to load.
//
// FAKE_CUDA_DEVICES=N in the environment makes it report N devices (0: none);
// each reports 64 MiB as its total memory, the driver tests use device 0 only.
// FAKE_CUDA_NO_VMM=1 makes every device report no virtual memory management.
// FAKE_CUDA_PEERS=1 makes every device able to access every other's memory
// (cuDeviceCanAccessPeer); FAKE_CUDA_RDMA=1 and FAKE_CUDA_EXPORTABLE=1 make
// every device report GPUDirect RDMA with VMM and POSIX descriptor export;
// FAKE_CUDA_REFUSE_EXTRAS=1 makes cuMemCreate refuse either (NOT_SUPPORTED).
// fake_cuda_last_create(&rdma, &handle_types) tells what the last cuMemCreate
// asked for, fake_cuda_last_access(ids, max) which devices the last
// cuMemSetAccess granted.
//
// Each device has its own primary context token, so tests can see which
// context a call ran in (fake_cuda_primary_context, and
// fake_cuda_host_alloc_context: the one current at the last cuMemHostAlloc).
// It exports cuMemcpyBatchAsync_v2 (CUDA 13) unless built with
// FAKE_CUDA_NO_BATCH (as acb_fake_libcuda_nobatch, a driver without it);
// fake_cuda_copy_counts() tells how many single and batch copies it ran.
// fake_cuda_primary_ctx_retained(device): the retains of that device's
// primary context not yet released.
// fake_cuda_pause_stream(stream, 1) holds a stream busy, as a long kernel
// would: an event recorded on it then is not ready until
// fake_cuda_pause_stream(stream, 0), or a synchronize that waits for it.
#include <cuda.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>

namespace {

constexpr size_t kGranule = size_t{2} << 20;
constexpr size_t kTotal = size_t{64} << 20;
std::atomic<size_t> g_used{0};
thread_local CUcontext t_current = nullptr;
int g_context_tokens[64] = {};
std::atomic<int> g_retained[64] = {};  ///< retains of each primary context not yet released
CUcontext g_host_alloc_context = nullptr;
CUcontext g_copy_context = nullptr;
std::mutex g_request_mutex;  // guards the last cuMemCreate and cuMemSetAccess requests
int g_last_create_rdma = -1, g_last_create_handle_types = -1;
int g_last_access_ids[64] = {};
int g_last_access_count = 0;

bool env_on(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && std::strcmp(value, "1") == 0;
}
std::atomic<unsigned long> g_copy_calls{0};    // cuMemcpyHtoDAsync + cuMemcpyDtoHAsync
std::atomic<unsigned long> g_batch_calls{0};   // cuMemcpyBatchAsync
std::atomic<unsigned long> g_batch_ranges{0};  // copies in those batches

struct FakeStream {
  bool paused = false;
  unsigned resumes = 0;  ///< times it was resumed: work recorded before one is done
};
struct FakeEvent {
  FakeStream* stream = nullptr;
  unsigned resumes_at_record = 0;
  bool waits = false;  ///< recorded while its stream was paused
};
std::mutex g_stream_mutex;
std::map<FakeStream*, int> g_streams;

void resume(FakeStream* stream) {
  if (stream != nullptr && stream->paused) {
    stream->paused = false;
    ++stream->resumes;
  }
}
bool g_initialised = false;

struct Allocation {
  int fd;
  size_t bytes;
};

// Mapped ranges, so that mapping over a mapping or unmapping what is not
// mapped fails as it does on a GPU.
std::mutex g_mutex;
std::map<CUdeviceptr, size_t> g_mappings;

}  // namespace

extern "C" {

CUresult CUDAAPI cuInit(unsigned int) {
  g_initialised = true;
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuDriverGetVersion(int* version) {
  *version = CUDA_VERSION;
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuGetErrorString(CUresult error, const char** text) {
  switch (error) {
    case CUDA_SUCCESS:
      *text = "no error";
      return CUDA_SUCCESS;
    case CUDA_ERROR_OUT_OF_MEMORY:
      *text = "out of memory";
      return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_VALUE:
      *text = "invalid argument";
      return CUDA_SUCCESS;
    case CUDA_ERROR_NOT_INITIALIZED:
      *text = "initialization error";
      return CUDA_SUCCESS;
    default:
      *text = nullptr;
      return CUDA_ERROR_INVALID_VALUE;
  }
}
CUresult CUDAAPI cuGetErrorName(CUresult error, const char** name) {
  switch (error) {
    case CUDA_ERROR_OUT_OF_MEMORY:
      *name = "CUDA_ERROR_OUT_OF_MEMORY";
      return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_VALUE:
      *name = "CUDA_ERROR_INVALID_VALUE";
      return CUDA_SUCCESS;
    default:
      *name = nullptr;
      return CUDA_ERROR_INVALID_VALUE;
  }
}
CUresult CUDAAPI cuDeviceGetCount(int* count) {
  if (!g_initialised) return CUDA_ERROR_NOT_INITIALIZED;
  const char* devices = std::getenv("FAKE_CUDA_DEVICES");
  *count = devices != nullptr ? std::atoi(devices) : 1;
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuDeviceGet(CUdevice* device, int ordinal) {
  int count = 0;
  if (cuDeviceGetCount(&count) != CUDA_SUCCESS) return CUDA_ERROR_NOT_INITIALIZED;
  if (ordinal < 0 || ordinal >= count) return CUDA_ERROR_INVALID_DEVICE;
  *device = ordinal;
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuDeviceTotalMem(size_t* bytes, CUdevice device) {
  int count = 0;
  if (cuDeviceGetCount(&count) != CUDA_SUCCESS) return CUDA_ERROR_NOT_INITIALIZED;
  if (device < 0 || device >= count) return CUDA_ERROR_INVALID_DEVICE;
  *bytes = kTotal;
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuDeviceGetAttribute(int* value, CUdevice_attribute attribute, CUdevice device) {
  int count = 0;
  if (cuDeviceGetCount(&count) != CUDA_SUCCESS) return CUDA_ERROR_NOT_INITIALIZED;
  if (device < 0 || device >= count) return CUDA_ERROR_INVALID_DEVICE;
  *value = 0;
  if (attribute == CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED) *value = env_on("FAKE_CUDA_NO_VMM") ? 0 : 1;
  if (attribute == CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED) *value = env_on("FAKE_CUDA_RDMA");
  if (attribute == CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED)
    *value = env_on("FAKE_CUDA_EXPORTABLE");
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuDeviceCanAccessPeer(int* can_access, CUdevice device, CUdevice peer) {
  int count = 0;
  if (cuDeviceGetCount(&count) != CUDA_SUCCESS) return CUDA_ERROR_NOT_INITIALIZED;
  if (device < 0 || device >= count || peer < 0 || peer >= count) return CUDA_ERROR_INVALID_DEVICE;
  *can_access = device != peer && env_on("FAKE_CUDA_PEERS") ? 1 : 0;
  return CUDA_SUCCESS;
}
// UUID bytes: 0xac, 0xb0, then 13 zeros, then the ordinal (GPU-acb00000-0000-0000-0000-0000000000NN).
CUresult CUDAAPI cuDeviceGetUuid(CUuuid* uuid, CUdevice device) {
  int count = 0;
  if (cuDeviceGetCount(&count) != CUDA_SUCCESS) return CUDA_ERROR_NOT_INITIALIZED;
  if (uuid == nullptr || device < 0 || device >= count) return CUDA_ERROR_INVALID_DEVICE;
  std::memset(uuid->bytes, 0, sizeof(uuid->bytes));
  uuid->bytes[0] = static_cast<char>(0xac);
  uuid->bytes[1] = static_cast<char>(0xb0);
  uuid->bytes[15] = static_cast<char>(device);
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext* context, CUdevice device) {
  if (device < 0 || device >= static_cast<CUdevice>(std::size(g_context_tokens))) return CUDA_ERROR_INVALID_DEVICE;
  g_retained[device].fetch_add(1);
  *context = reinterpret_cast<CUcontext>(&g_context_tokens[device]);
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice device) {
  if (device < 0 || device >= static_cast<CUdevice>(std::size(g_retained))) return CUDA_ERROR_INVALID_DEVICE;
  g_retained[device].fetch_sub(1);
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuCtxGetCurrent(CUcontext* context) {
  *context = t_current;
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuCtxSetCurrent(CUcontext context) {
  t_current = context;
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuCtxSynchronize(void) {
  if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> lock(g_stream_mutex);
  for (auto& entry : g_streams) resume(entry.first);  // waits for every stream's work
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (t_current == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  *total_bytes = kTotal;
  *free_bytes = kTotal - g_used.load();
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemGetAllocationGranularity(size_t* granularity, const CUmemAllocationProp* prop,
                                               CUmemAllocationGranularity_flags) {
  if (prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE) return CUDA_ERROR_INVALID_VALUE;
  *granularity = kGranule;
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemAddressReserve(CUdeviceptr* ptr, size_t size, size_t alignment, CUdeviceptr,
                                     unsigned long long) {
  if (size == 0 || size % kGranule != 0 || alignment != kGranule) return CUDA_ERROR_INVALID_VALUE;
  void* raw =
      mmap(nullptr, size + kGranule, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t base = (start + kGranule - 1) & ~(uintptr_t{kGranule} - 1);
  if (base > start) munmap(raw, base - start);
  if (start + kGranule > base)
    munmap(reinterpret_cast<void*>(base + size), start + kGranule - base);
  *ptr = base;
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemAddressFree(CUdeviceptr ptr, size_t size) {
  return munmap(reinterpret_cast<void*>(ptr), size) == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
CUresult CUDAAPI cuMemCreate(CUmemGenericAllocationHandle* handle, size_t size,
                             const CUmemAllocationProp* prop, unsigned long long) {
  int count = 0;
  if (cuDeviceGetCount(&count) != CUDA_SUCCESS) return CUDA_ERROR_NOT_INITIALIZED;
  if (size == 0 || size % kGranule != 0 || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
      prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE || prop->location.id < 0 ||
      prop->location.id >= count)
    return CUDA_ERROR_INVALID_VALUE;
  {
    std::lock_guard<std::mutex> lock(g_request_mutex);
    g_last_create_rdma = prop->allocFlags.gpuDirectRDMACapable;
    g_last_create_handle_types = static_cast<int>(prop->requestedHandleTypes);
  }
  if (env_on("FAKE_CUDA_REFUSE_EXTRAS") &&
      (prop->allocFlags.gpuDirectRDMACapable != 0 || prop->requestedHandleTypes != CU_MEM_HANDLE_TYPE_NONE))
    return CUDA_ERROR_NOT_SUPPORTED;
  size_t used = g_used.load();
  do {
    if (used + size > kTotal) return CUDA_ERROR_OUT_OF_MEMORY;
  } while (!g_used.compare_exchange_weak(used, used + size));
  const int fd = memfd_create("fake-cuda", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(size)) != 0) {
    if (fd >= 0) close(fd);
    g_used -= size;
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  *handle = reinterpret_cast<CUmemGenericAllocationHandle>(new Allocation{fd, size});
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemRelease(CUmemGenericAllocationHandle handle) {
  auto* allocation = reinterpret_cast<Allocation*>(handle);
  g_used -= allocation->bytes;
  close(allocation->fd);
  delete allocation;
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                          CUmemGenericAllocationHandle handle, unsigned long long) {
  auto* allocation = reinterpret_cast<Allocation*>(handle);
  if (ptr % kGranule != 0 || offset != 0 || size != allocation->bytes)
    return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(g_mutex);
  auto next = g_mappings.lower_bound(ptr);
  if (next != g_mappings.end() && next->first < ptr + size) return CUDA_ERROR_INVALID_VALUE;
  if (next != g_mappings.begin() && std::prev(next)->first + std::prev(next)->second > ptr)
    return CUDA_ERROR_INVALID_VALUE;
  // Mapped but inaccessible until cuMemSetAccess, as on a GPU.
  void* got = mmap(reinterpret_cast<void*>(ptr), size, PROT_NONE, MAP_SHARED | MAP_FIXED,
                   allocation->fd, 0);
  if (got == MAP_FAILED) return CUDA_ERROR_INVALID_VALUE;
  g_mappings.emplace(ptr, size);
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc* desc,
                                size_t count) {
  int devices = 0;
  if (cuDeviceGetCount(&devices) != CUDA_SUCCESS) return CUDA_ERROR_NOT_INITIALIZED;
  if (count == 0 || count > std::size(g_last_access_ids)) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < count; ++i) {
    if (desc[i].location.type != CU_MEM_LOCATION_TYPE_DEVICE || desc[i].location.id < 0 ||
        desc[i].location.id >= devices || desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
      return CUDA_ERROR_INVALID_VALUE;
  }
  {
    std::lock_guard<std::mutex> lock(g_request_mutex);
    for (size_t i = 0; i < count; ++i) g_last_access_ids[i] = desc[i].location.id;
    g_last_access_count = static_cast<int>(count);
  }
  return mprotect(reinterpret_cast<void*>(ptr), size, PROT_READ | PROT_WRITE) == 0
             ? CUDA_SUCCESS
             : CUDA_ERROR_INVALID_VALUE;
}
CUresult CUDAAPI cuMemUnmap(CUdeviceptr ptr, size_t size) {
  if (ptr % kGranule != 0 || size % kGranule != 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(g_mutex);
  auto first = g_mappings.find(ptr);
  auto last = first;
  CUdeviceptr cursor = ptr;
  while (last != g_mappings.end() && last->first == cursor && cursor < ptr + size)
    cursor += (last++)->second;
  if (first == g_mappings.end() || cursor != ptr + size) return CUDA_ERROR_INVALID_VALUE;
  g_mappings.erase(first, last);
  void* got = mmap(reinterpret_cast<void*>(ptr), size, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  return got == MAP_FAILED ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemHostAlloc(void** ptr, size_t size, unsigned int) {
  g_host_alloc_context = t_current;
  *ptr = std::aligned_alloc(4096, (size + 4095) / 4096 * 4096);
  return *ptr ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}
CUresult CUDAAPI cuMemFreeHost(void* ptr) {
  std::free(ptr);
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemcpyHtoDAsync(CUdeviceptr dst, const void* src, size_t size, CUstream) {
  g_copy_context = t_current;
  ++g_copy_calls;
  std::memcpy(reinterpret_cast<void*>(dst), src, size);
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemcpyDtoHAsync(void* dst, CUdeviceptr src, size_t size, CUstream) {
  ++g_copy_calls;
  std::memcpy(dst, reinterpret_cast<const void*>(src), size);
  return CUDA_SUCCESS;
}
#ifndef FAKE_CUDA_NO_BATCH
// CUDA 13's signature (cuda.h maps the name to cuMemcpyBatchAsync_v2), with
// the checks the real one documents: not the legacy null stream, attrsIdxs[0]
// == 0, increasing indices below count, a valid source access order.
CUresult CUDAAPI cuMemcpyBatchAsync(CUdeviceptr* dsts, CUdeviceptr* srcs, size_t* sizes,
                                    size_t count, CUmemcpyAttributes* attrs, size_t* attrsIdxs,
                                    size_t numAttrs, CUstream stream) {
  if (stream == nullptr || count == 0 || numAttrs == 0 || numAttrs > count || attrsIdxs[0] != 0)
    return CUDA_ERROR_INVALID_VALUE;
  for (size_t k = 0; k < numAttrs; ++k) {
    if (k > 0 && attrsIdxs[k] <= attrsIdxs[k - 1]) return CUDA_ERROR_INVALID_VALUE;
    if (attrsIdxs[k] >= count) return CUDA_ERROR_INVALID_VALUE;
    if (attrs[k].srcAccessOrder == CU_MEMCPY_SRC_ACCESS_ORDER_INVALID ||
        attrs[k].srcAccessOrder > CU_MEMCPY_SRC_ACCESS_ORDER_ANY)
      return CUDA_ERROR_INVALID_VALUE;
  }
  g_copy_context = t_current;
  ++g_batch_calls;
  g_batch_ranges += count;
  for (size_t i = 0; i < count; ++i)
    std::memcpy(reinterpret_cast<void*>(dsts[i]), reinterpret_cast<const void*>(srcs[i]),
                sizes[i]);
  return CUDA_SUCCESS;
}
#endif
CUresult CUDAAPI cuStreamCreate(CUstream* stream, unsigned int flags) {
  if (flags != CU_STREAM_NON_BLOCKING) return CUDA_ERROR_INVALID_VALUE;
  auto* fake = new FakeStream;
  std::lock_guard<std::mutex> lock(g_stream_mutex);
  g_streams[fake] = 0;
  *stream = reinterpret_cast<CUstream>(fake);
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuStreamDestroy(CUstream stream) {
  auto* fake = reinterpret_cast<FakeStream*>(stream);
  std::lock_guard<std::mutex> lock(g_stream_mutex);
  g_streams.erase(fake);
  delete fake;
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuStreamSynchronize(CUstream stream) {
  std::lock_guard<std::mutex> lock(g_stream_mutex);
  resume(reinterpret_cast<FakeStream*>(stream));
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuEventCreate(CUevent* event, unsigned int flags) {
  if (flags != CU_EVENT_DISABLE_TIMING) return CUDA_ERROR_INVALID_VALUE;
  *event = reinterpret_cast<CUevent>(new FakeEvent);
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuEventDestroy(CUevent event) {
  delete reinterpret_cast<FakeEvent*>(event);
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuEventRecord(CUevent event, CUstream stream) {
  auto* fake = reinterpret_cast<FakeEvent*>(event);
  auto* on = reinterpret_cast<FakeStream*>(stream);  // the null stream: never paused
  std::lock_guard<std::mutex> lock(g_stream_mutex);
  fake->stream = on;
  fake->waits = on != nullptr && on->paused;
  fake->resumes_at_record = on != nullptr ? on->resumes : 0;
  return CUDA_SUCCESS;
}
CUresult CUDAAPI cuEventQuery(CUevent event) {
  auto* fake = reinterpret_cast<FakeEvent*>(event);
  std::lock_guard<std::mutex> lock(g_stream_mutex);
  return fake->waits && fake->stream->resumes == fake->resumes_at_record ? CUDA_ERROR_NOT_READY
                                                                          : CUDA_SUCCESS;
}
CUresult CUDAAPI cuEventSynchronize(CUevent event) {
  auto* fake = reinterpret_cast<FakeEvent*>(event);
  std::lock_guard<std::mutex> lock(g_stream_mutex);
  if (fake->waits && fake->stream->resumes == fake->resumes_at_record) resume(fake->stream);
  return CUDA_SUCCESS;
}

// --- test controls (not part of libcuda) -----------------------------------
void fake_cuda_pause_stream(CUstream stream, int paused);
CUcontext fake_cuda_primary_context(int device);
int fake_cuda_primary_ctx_retained(int device);
CUcontext fake_cuda_host_alloc_context();
CUcontext fake_cuda_copy_context();
void fake_cuda_last_create(int* rdma, int* handle_types);
int fake_cuda_last_access(int* ids, int max);
void fake_cuda_copy_counts(unsigned long* copies, unsigned long* batches, unsigned long* ranges);

void fake_cuda_pause_stream(CUstream stream, int paused) {
  auto* fake = reinterpret_cast<FakeStream*>(stream);
  std::lock_guard<std::mutex> lock(g_stream_mutex);
  if (paused)
    fake->paused = true;
  else
    resume(fake);
}
CUcontext fake_cuda_primary_context(int device) {
  return reinterpret_cast<CUcontext>(&g_context_tokens[device]);
}
int fake_cuda_primary_ctx_retained(int device) {
  return device >= 0 && device < static_cast<int>(std::size(g_retained)) ? g_retained[device].load() : -1;
}
CUcontext fake_cuda_host_alloc_context() { return g_host_alloc_context; }
CUcontext fake_cuda_copy_context() { return g_copy_context; }
void fake_cuda_last_create(int* rdma, int* handle_types) {
  std::lock_guard<std::mutex> lock(g_request_mutex);
  *rdma = g_last_create_rdma;
  *handle_types = g_last_create_handle_types;
}
int fake_cuda_last_access(int* ids, int max) {
  std::lock_guard<std::mutex> lock(g_request_mutex);
  for (int i = 0; i < g_last_access_count && i < max; ++i) ids[i] = g_last_access_ids[i];
  return g_last_access_count;
}
void fake_cuda_copy_counts(unsigned long* copies, unsigned long* batches, unsigned long* ranges) {
  *copies = g_copy_calls;
  *batches = g_batch_calls;
  *ranges = g_batch_ranges;
}

}  // extern "C"
