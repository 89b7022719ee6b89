// The driver contract on the CUDA driver API (virtual memory management).
//
//   reserve/free_reservation   cuMemAddressReserve / cuMemAddressFree
//   create/release             cuMemCreate (pinned, on the device) / cuMemRelease
//   map/unmap                  cuMemMap + cuMemSetAccess(read-write, for the
//                              owning device and every other visible device
//                              that can access it as a peer) / cuMemUnmap
//   host_alloc/host_free       cuMemHostAlloc(PORTABLE) / cuMemFreeHost
//   streams, events            non-blocking streams, events without timing
//   copies                     cuMemcpyHtoDAsync_v2 / cuMemcpyDtoHAsync_v2
//   batches of copies          cuMemcpyBatchAsync_v2 where libcuda exports it
//                              (CUDA 13+) and the stream is not the null
//                              stream, else one copy per range; a batch the
//                              driver refuses as not supported switches to
//                              per-range copies for the driver's life
//
// Every call runs in the device's primary context (the one the CUDA runtime
// and torch use), made current on the calling thread for the call when it is
// not already, and the thread's previous context is made current again after
// it (ContextScope): torch on that thread may be working on another device.
// A stream the driver did not create (the null stream, torch's streams) runs
// in the context of the memory it copies, else the thread's current one,
// else the one device the driver has used (0 when it has used none or
// several). Pinned host memory is allocated in the context of the device it
// backs.
// Each device must support virtual memory management (checked at start).
// Peer access: a process that sees several GPUs may copy between them or run
// kernels on one that read another's memory (P2P, NVLink); VMM memory is
// accessible only from the devices cuMemSetAccess names, so every mapping
// names each visible device that cuDeviceCanAccessPeer says can reach the
// owner (a process that sees one GPU pays nothing). Physical memory asks for
// GPUDirect RDMA (allocFlags.gpuDirectRDMACapable) and for an exportable
// POSIX file descriptor handle where the device reports support for them, so
// NCCL's user-buffer registration and a NIC can use acb's memory as they use
// ncclMemAlloc's; a driver that refuses either for a device gets plain
// allocations on it from then on.
// A primary context is retained lazily, the first time a call needs that
// device, never for every visible GPU at construction: a context costs
// hundreds of MiB of device memory, makes the process show up on that GPU in
// nvidia-smi, and cannot be created at all on a GPU in a prohibited or
// exclusive compute mode that another process uses. Construction only
// initialises the driver, counts the devices and checks their attributes.
// The driver records which device each reservation, allocation, stream and
// event belongs to, both to pick the context and to name the device in
// errors. Every failure is a DriverError naming the call, size, address,
// device and CUDA's error string; CUDA_ERROR_OUT_OF_MEMORY sets
// out_of_memory() and the message adds the device's free and total memory.
//
// Thread-safety: CUDA calls are thread-safe; the bookkeeping maps are
// guarded by one mutex that is never held across a blocking CUDA call; the
// per-device contexts by another, held while one is retained (first use).
#include <atomic>
#include <cerrno>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "alloc/cuda_api.h"
#include "alloc/driver.h"

namespace acb::alloc {

namespace {

std::string hex(std::uintptr_t value) {
  std::ostringstream out;
  out << "0x" << std::hex << value;
  return out.str();
}

std::string size_device(std::size_t bytes, int device) {
  return "size=" + std::to_string(bytes) + ", device=" + std::to_string(device);
}

class CudaDriver final : public Driver {
 public:
  explicit CudaDriver(CudaApi api) : api_(api) {
    check("cuInit", api_.cuInit(0), "flags=0");
    int count = 0;
    check("cuDeviceGetCount", api_.cuDeviceGetCount(&count), "");
    if (count <= 0)
      throw DriverError("cuDeviceGetCount", ENODEV, "cuDeviceGetCount() found no CUDA device");
    devices_ = std::make_unique<DeviceSlot[]>(static_cast<std::size_t>(count));
    for (int ordinal = 0; ordinal < count; ++ordinal) {
      CUdevice& device = devices_[static_cast<std::size_t>(ordinal)].device;
      check("cuDeviceGet", api_.cuDeviceGet(&device, ordinal), "device=" + std::to_string(ordinal));
      int vmm = 0;
      check("cuDeviceGetAttribute",
            api_.cuDeviceGetAttribute(
                &vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, device),
            "VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, device=" + std::to_string(ordinal));
      if (vmm == 0)
        throw DriverError("cuDeviceGetAttribute", CUDA_ERROR_NOT_SUPPORTED,
                          "CUDA device " + std::to_string(ordinal) +
                              " does not support virtual memory management "
                              "(CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED is 0), which "
                              "acb's arena needs (cuMemCreate/cuMemMap); some vGPU and older "
                              "driver setups lack it: hide this GPU with CUDA_VISIBLE_DEVICES or "
                              "run without acb");
    }
    device_count_ = count;
    for (int owner = 0; owner < count; ++owner) {
      DeviceSlot& slot = devices_[static_cast<std::size_t>(owner)];
      slot.rdma_capable = attribute(CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED, owner) != 0;
      slot.exportable = attribute(CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, owner) != 0;
      auto read_write_for = [](int device) {
        CUmemAccessDesc access{};
        access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        access.location.id = device;
        access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
        return access;
      };
      slot.access.push_back(read_write_for(owner));
      for (int peer = 0; peer < count; ++peer) {
        if (peer == owner) continue;
        int can_access = 0;
        check("cuDeviceCanAccessPeer",
              api_.cuDeviceCanAccessPeer(&can_access, devices_[static_cast<std::size_t>(peer)].device, slot.device),
              "device=" + std::to_string(peer) + ", peer=" + std::to_string(owner));
        if (can_access != 0) slot.access.push_back(read_write_for(peer));
      }
    }
  }

  ~CudaDriver() override {
    // Errors are ignored here: at process exit CUDA may already be deinitialised.
    for (int d = 0; d < device_count_; ++d) {
      const DeviceSlot& slot = devices_[static_cast<std::size_t>(d)];
      if (slot.context.load() != nullptr) api_.cuDevicePrimaryCtxRelease(slot.device);
    }
  }

  std::string name() const override { return "cuda"; }
  int device_count() const override { return device_count_; }

  std::size_t granularity(int device) const override {
    check_device(device, "granularity");
    return slot(device, "cuMemGetAllocationGranularity").granularity_bytes;
  }

  MemoryInfo memory_info(int device) const override {
    const ContextScope scope = use_device(device, "cuMemGetInfo");
    size_t free_bytes = 0, total_bytes = 0;
    check("cuMemGetInfo", api_.cuMemGetInfo(&free_bytes, &total_bytes),
          "device=" + std::to_string(device));
    return MemoryInfo{free_bytes, total_bytes};
  }

  DevicePtr reserve(std::size_t bytes, int device) override {
    const ContextScope scope = use_device(device, "cuMemAddressReserve");
    CUdeviceptr base = 0;
    check("cuMemAddressReserve", api_.cuMemAddressReserve(&base, bytes, granularity(device), 0, 0),
          size_device(bytes, device));
    std::lock_guard<std::mutex> lock(mutex_);
    reservations_[base] = Range{bytes, device};
    return base;
  }

  void free_reservation(DevicePtr base, std::size_t bytes) override {
    const int device = device_of_address(base);
    check("cuMemAddressFree", api_.cuMemAddressFree(base, bytes),
          "address=" + hex(base) + ", " + size_device(bytes, device));
    std::lock_guard<std::mutex> lock(mutex_);
    reservations_.erase(base);
  }

  PhysicalHandle create(std::size_t bytes, int device) override {
    const ContextScope scope = use_device(device, "cuMemCreate");
    CUmemAllocationProp prop = allocation_prop(device);
    CUmemGenericAllocationHandle handle = 0;
    CUresult result = api_.cuMemCreate(&handle, bytes, &prop, 0);
    if ((result == CUDA_ERROR_NOT_SUPPORTED || result == CUDA_ERROR_INVALID_VALUE) && has_extras(prop)) {
      // E.g. a container or vGPU without RDMA or descriptor export: plain
      // memory still serves everything but NCCL registration and RDMA.
      devices_[static_cast<std::size_t>(device)].extras_refused.store(true, std::memory_order_relaxed);
      prop = allocation_prop(device);
      result = api_.cuMemCreate(&handle, bytes, &prop, 0);
    }
    if (result == CUDA_ERROR_OUT_OF_MEMORY) {
      std::string figures;
      size_t free_bytes = 0, total_bytes = 0;
      if (api_.cuMemGetInfo(&free_bytes, &total_bytes) == CUDA_SUCCESS)
        figures = ": device has free=" + std::to_string(free_bytes) +
                  " of total=" + std::to_string(total_bytes) + " bytes";
      throw DriverError("cuMemCreate", result,
                        "cuMemCreate(" + size_device(bytes, device) +
                            ") failed: " + api_.error_text(result) + figures)
          .set_out_of_memory(true);
    }
    check("cuMemCreate", result, size_device(bytes, device));
    std::lock_guard<std::mutex> lock(mutex_);
    handles_[handle] = Range{bytes, device};
    return handle;
  }

  void release(PhysicalHandle handle) override {
    const Range range = handle_range(handle);
    check("cuMemRelease", api_.cuMemRelease(handle),
          "handle=" + std::to_string(handle) + ", " + size_device(range.bytes, range.device));
    std::lock_guard<std::mutex> lock(mutex_);
    handles_.erase(handle);
  }

  void map(DevicePtr address, std::size_t bytes, PhysicalHandle handle, int device) override {
    const ContextScope scope = use_device(device, "cuMemMap");
    const std::string args = "address=" + hex(address) + ", " + size_device(bytes, device) +
                             ", handle=" + std::to_string(handle);
    check("cuMemMap", api_.cuMemMap(address, bytes, 0, handle, 0), args);
    const std::vector<CUmemAccessDesc>& access = devices_[static_cast<std::size_t>(device)].access;
    const CUresult result = api_.cuMemSetAccess(address, bytes, access.data(), access.size());
    if (result != CUDA_SUCCESS) {
      api_.cuMemUnmap(address, bytes);  // leave nothing half-mapped behind
      check("cuMemSetAccess", result, args);
    }
  }

  void unmap(DevicePtr address, std::size_t bytes) override {
    const int device = device_of_address(address);
    const ContextScope scope = use_device(device >= 0 ? device : current_device(), "cuMemUnmap");
    check("cuMemUnmap", api_.cuMemUnmap(address, bytes),
          "address=" + hex(address) + ", " + size_device(bytes, device));
  }

  void* host_alloc(std::size_t bytes, int device) override {
    const ContextScope scope = use_device(device, "cuMemHostAlloc");
    void* ptr = nullptr;
    const CUresult result = api_.cuMemHostAlloc(&ptr, bytes, CU_MEMHOSTALLOC_PORTABLE);
    if (result == CUDA_ERROR_OUT_OF_MEMORY)
      throw DriverError(
          "cuMemHostAlloc", result,
          "cuMemHostAlloc(size=" + std::to_string(bytes) + ") failed: " + api_.error_text(result))
          .set_out_of_memory(true);
    check("cuMemHostAlloc", result, size_device(bytes, device));
    std::lock_guard<std::mutex> lock(mutex_);
    host_devices_[ptr] = device;
    return ptr;
  }

  void host_free(void* ptr, std::size_t bytes) override {
    if (ptr == nullptr) return;
    int device = current_device();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = host_devices_.find(ptr);
      if (it != host_devices_.end()) {
        device = it->second;
        host_devices_.erase(it);
      }
    }
    const ContextScope scope = use_device(device, "cuMemFreeHost");
    check("cuMemFreeHost", api_.cuMemFreeHost(ptr),
          "address=" + hex(reinterpret_cast<std::uintptr_t>(ptr)) +
              ", size=" + std::to_string(bytes));
  }

  StreamHandle create_stream(int device) override {
    const ContextScope scope = use_device(device, "cuStreamCreate");
    CUstream stream = nullptr;
    check("cuStreamCreate", api_.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING),
          "device=" + std::to_string(device));
    std::lock_guard<std::mutex> lock(mutex_);
    stream_devices_[stream] = device;
    return stream;
  }

  void destroy_stream(StreamHandle stream) override {
    const int device = device_of_stream(stream, 0);
    const ContextScope scope = use_device(device, "cuStreamDestroy");
    check("cuStreamDestroy", api_.cuStreamDestroy(static_cast<CUstream>(stream)),
          stream_args(stream, device));
    std::lock_guard<std::mutex> lock(mutex_);
    stream_devices_.erase(stream);
  }

  void synchronize_stream(StreamHandle stream) override {
    const int device = device_of_stream(stream, 0);
    const ContextScope scope = use_device(device, "cuStreamSynchronize");
    check("cuStreamSynchronize", api_.cuStreamSynchronize(static_cast<CUstream>(stream)),
          stream_args(stream, device));
  }

  void synchronize_device(int device) override {
    const ContextScope scope = use_device(device, "cuCtxSynchronize");
    check("cuCtxSynchronize", api_.cuCtxSynchronize(), "device=" + std::to_string(device));
  }

  EventHandle create_event(int device) override {
    const ContextScope scope = use_device(device, "cuEventCreate");
    CUevent event = nullptr;
    check("cuEventCreate", api_.cuEventCreate(&event, CU_EVENT_DISABLE_TIMING),
          "device=" + std::to_string(device));
    std::lock_guard<std::mutex> lock(mutex_);
    event_devices_[event] = device;
    return event;
  }

  void destroy_event(EventHandle event) override {
    const int device = device_of_event(event);
    const ContextScope scope = use_device(device, "cuEventDestroy");
    check("cuEventDestroy", api_.cuEventDestroy(static_cast<CUevent>(event)),
          event_args(event, device));
    std::lock_guard<std::mutex> lock(mutex_);
    event_devices_.erase(event);
  }

  void record_event(EventHandle event, StreamHandle stream) override {
    const int device = device_of_event(event);
    const ContextScope scope = use_device(device, "cuEventRecord");
    check("cuEventRecord",
          api_.cuEventRecord(static_cast<CUevent>(event), static_cast<CUstream>(stream)),
          event_args(event, device) + ", stream=" + hex(reinterpret_cast<std::uintptr_t>(stream)));
  }

  bool event_done(EventHandle event) override {
    const int device = device_of_event(event);
    const ContextScope scope = use_device(device, "cuEventQuery");
    const CUresult result = api_.cuEventQuery(static_cast<CUevent>(event));
    if (result == CUDA_ERROR_NOT_READY) return false;
    check("cuEventQuery", result, event_args(event, device));
    return true;
  }

  void synchronize_event(EventHandle event) override {
    const int device = device_of_event(event);
    const ContextScope scope = use_device(device, "cuEventSynchronize");
    check("cuEventSynchronize", api_.cuEventSynchronize(static_cast<CUevent>(event)),
          event_args(event, device));
  }

  void copy_to_host_async(void* dst, DevicePtr src, std::size_t bytes,
                          StreamHandle stream) override {
    const int device = device_of_stream(stream, src);
    const ContextScope scope = use_device(device, "cuMemcpyDtoHAsync");
    check("cuMemcpyDtoHAsync",
          api_.cuMemcpyDtoHAsync(dst, src, bytes, static_cast<CUstream>(stream)),
          "dst=" + hex(reinterpret_cast<std::uintptr_t>(dst)) + ", src=" + hex(src) +
              ", size=" + std::to_string(bytes) + ", " + stream_args(stream, device));
  }

  void copy_to_device_async(DevicePtr dst, const void* src, std::size_t bytes,
                            StreamHandle stream) override {
    const int device = device_of_stream(stream, dst);
    const ContextScope scope = use_device(device, "cuMemcpyHtoDAsync");
    check("cuMemcpyHtoDAsync",
          api_.cuMemcpyHtoDAsync(dst, src, bytes, static_cast<CUstream>(stream)),
          "dst=" + hex(dst) + ", src=" + hex(reinterpret_cast<std::uintptr_t>(src)) +
              ", size=" + std::to_string(bytes) + ", " + stream_args(stream, device));
  }

  void copy_batch_async(const CopyRange* ranges, std::size_t count, CopyDirection direction,
                        StreamHandle stream) override {
#if CUDA_VERSION >= 13000
    // The null stream is not allowed for a batch; one range needs none.
    if (api_.cuMemcpyBatchAsync != nullptr && stream != nullptr && count > 1 &&
        batch_supported_.load(std::memory_order_relaxed)) {
      const int device = device_of_stream(stream, ranges[0].device);
      const ContextScope scope = use_device(device, "cuMemcpyBatchAsync");
      const bool to_host = direction == CopyDirection::to_host;
      std::vector<CUdeviceptr> dsts(count);
      std::vector<CUdeviceptr> srcs(count);
      std::vector<std::size_t> sizes(count);
      std::size_t total = 0;
      for (std::size_t i = 0; i < count; ++i) {
        const auto host = reinterpret_cast<CUdeviceptr>(ranges[i].host);  // unified addressing
        dsts[i] = to_host ? host : ranges[i].device;
        srcs[i] = to_host ? ranges[i].device : host;
        sizes[i] = ranges[i].bytes;
        total += ranges[i].bytes;
      }
      // One attribute for all: read the source in stream order (it may be
      // written by earlier work on the stream); the location hints matter
      // only for managed memory, which acb never copies.
      CUmemcpyAttributes attributes{};
      attributes.srcAccessOrder = CU_MEMCPY_SRC_ACCESS_ORDER_STREAM;
      CUmemLocation host_location{};
      host_location.type = CU_MEM_LOCATION_TYPE_HOST;
      CUmemLocation device_location{};
      device_location.type = CU_MEM_LOCATION_TYPE_DEVICE;
      device_location.id = device;
      attributes.srcLocHint = to_host ? device_location : host_location;
      attributes.dstLocHint = to_host ? host_location : device_location;
      std::size_t first_attribute = 0;
      const CUresult result =
          api_.cuMemcpyBatchAsync(dsts.data(), srcs.data(), sizes.data(), count, &attributes,
                                  &first_attribute, 1, static_cast<CUstream>(stream));
      if (result != CUDA_ERROR_NOT_SUPPORTED) {
        check("cuMemcpyBatchAsync", result,
              std::string(to_host ? "device->host" : "host->device") +
                  ", count=" + std::to_string(count) + ", size=" + std::to_string(total) +
                  ", first dst=" + hex(dsts[0]) + ", first src=" + hex(srcs[0]) + ", " +
                  stream_args(stream, device));
        return;
      }
      batch_supported_.store(false, std::memory_order_relaxed);
    }
#endif
    Driver::copy_batch_async(ranges, count, direction, stream);
  }

  void detach_after_fork(DevicePtr, std::size_t, const void*) override {
    // Nothing to do: a forked child cannot use the parent's CUDA context
    // (every CUDA call in it fails with an initialization error), so the
    // parent's device memory is out of the child's reach whatever happens.
  }

 private:
  struct Range {
    std::size_t bytes = 0;
    int device = -1;
  };

  /// Throws DriverError "call(args) failed: <CUDA's text>" unless result is CUDA_SUCCESS.
  void check(const char* call, CUresult result, const std::string& args) const {
    if (result == CUDA_SUCCESS) return;
    throw DriverError(call, result,
                      std::string(call) + "(" + args + ") failed: " + api_.error_text(result))
        .set_out_of_memory(result == CUDA_ERROR_OUT_OF_MEMORY);
  }

  void check_device(int device, const char* call) const {
    if (device < 0 || device >= device_count())
      throw DriverError(call, CUDA_ERROR_INVALID_DEVICE,
                        std::string(call) + "(device=" + std::to_string(device) +
                            ") failed: no such device (" + std::to_string(device_count()) +
                            " CUDA device(s))");
  }

  /// One CUDA device; its context and granularity_bytes are set together, on first use.
  struct DeviceSlot {
    CUdevice device = 0;
    /// The retained primary context; nullptr until first use. Stored last
    /// (release), so a reader that sees it also sees granularity_bytes.
    std::atomic<CUcontext> context{nullptr};
    std::size_t granularity_bytes = 0;
    /// Set at construction: what every mapping of this device's memory
    /// grants (read-write for the device itself first, then for each other
    /// device that can access it, cuDeviceCanAccessPeer), and what
    /// cuMemCreate may ask for.
    std::vector<CUmemAccessDesc> access;
    bool rdma_capable = false;
    bool exportable = false;
    /// cuMemCreate refused the RDMA flag or the handle type: plain from then on.
    std::atomic<bool> extras_refused{false};
  };

  /// The context that was current on the thread before a call, made current
  /// again when the call ends (also when it throws).
  class ContextScope {
   public:
    ContextScope(const CudaApi& api, CUcontext previous, bool switched)
        : api_(api), previous_(previous), switched_(switched) {}
    ~ContextScope() {
      // Nothing to report a failure to here; the call's own result stands.
      if (switched_) api_.cuCtxSetCurrent(previous_);
    }
    ContextScope(const ContextScope&) = delete;
    ContextScope& operator=(const ContextScope&) = delete;

   private:
    const CudaApi& api_;
    CUcontext previous_;
    bool switched_;
  };

  /// The device's slot, its primary context retained (and its granularity
  /// read) on the first call for that device.
  const DeviceSlot& slot(int device, const char* call) const {
    DeviceSlot& slot = devices_[static_cast<std::size_t>(device)];
    if (slot.context.load(std::memory_order_acquire) != nullptr) return slot;  // every call after the first
    std::lock_guard<std::mutex> lock(context_mutex_);
    if (slot.context.load(std::memory_order_relaxed) != nullptr) return slot;
    CUcontext context = nullptr;
    check("cuDevicePrimaryCtxRetain", api_.cuDevicePrimaryCtxRetain(&context, slot.device),
          std::string("device=") + std::to_string(device) + ", for " + call);
    size_t granule = 0;
    const CUmemAllocationProp prop = allocation_prop(device);
    const CUresult result = api_.cuMemGetAllocationGranularity(&granule, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
    if (result != CUDA_SUCCESS) {
      api_.cuDevicePrimaryCtxRelease(slot.device);  // retained only with its granularity known
      check("cuMemGetAllocationGranularity", result, "device=" + std::to_string(device));
    }
    slot.granularity_bytes = granule;
    slot.context.store(context, std::memory_order_release);  // publishes granularity_bytes with it
    return slot;
  }

  /// Makes the device's primary context current on this thread until the
  /// returned scope ends (retaining the context first, once).
  [[nodiscard]] ContextScope use_device(int device, const char* call) const {
    check_device(device, call);
    const CUcontext wanted = slot(device, call).context.load(std::memory_order_relaxed);
    CUcontext current = nullptr;
    if (api_.cuCtxGetCurrent(&current) == CUDA_SUCCESS && current == wanted)
      return ContextScope(api_, current, false);
    check("cuCtxSetCurrent", api_.cuCtxSetCurrent(wanted), "device=" + std::to_string(device));
    return ContextScope(api_, current, true);
  }

  /// The device whose primary context is current on this thread; when none
  /// of ours is, the one device this driver has used (its context retained),
  /// and 0 only when it has used none or several. A process under acb mostly
  /// uses one GPU, which need not be 0: falling back to 0 there would
  /// synchronise the wrong device and create a context on a GPU it never uses.
  int current_device() const {
    CUcontext current = nullptr;
    if (api_.cuCtxGetCurrent(&current) == CUDA_SUCCESS && current != nullptr) {
      for (int d = 0; d < device_count_; ++d)
        if (devices_[static_cast<std::size_t>(d)].context.load(std::memory_order_acquire) == current) return d;
    }
    int used = -1;
    for (int d = 0; d < device_count_; ++d) {
      if (devices_[static_cast<std::size_t>(d)].context.load(std::memory_order_acquire) == nullptr) continue;
      if (used >= 0) return 0;
      used = d;
    }
    return used >= 0 ? used : 0;
  }

  CUmemAllocationProp allocation_prop(int device) const {
    const DeviceSlot& slot = devices_[static_cast<std::size_t>(device)];
    CUmemAllocationProp prop{};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = device;
    if (!slot.extras_refused.load(std::memory_order_relaxed)) {
      if (slot.rdma_capable) prop.allocFlags.gpuDirectRDMACapable = 1;
      if (slot.exportable) prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    }
    return prop;
  }

  static bool has_extras(const CUmemAllocationProp& prop) {
    return prop.allocFlags.gpuDirectRDMACapable != 0 || prop.requestedHandleTypes != CU_MEM_HANDLE_TYPE_NONE;
  }

  int attribute(CUdevice_attribute which, int ordinal) const {
    int value = 0;
    check("cuDeviceGetAttribute",
          api_.cuDeviceGetAttribute(&value, which, devices_[static_cast<std::size_t>(ordinal)].device),
          "attribute=" + std::to_string(static_cast<int>(which)) + ", device=" + std::to_string(ordinal));
    return value;
  }

  /// The device of the reservation holding `address`, or -1 when unknown.
  int device_of_address(DevicePtr address) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = reservations_.upper_bound(address);
    if (it == reservations_.begin()) return -1;
    --it;
    return address < it->first + it->second.bytes ? it->second.device : -1;
  }

  Range handle_range(PhysicalHandle handle) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = handles_.find(handle);
    return it == handles_.end() ? Range{} : it->second;
  }

  /// The device of a stream this driver created. The null stream and streams
  /// of others (torch's) run in the context of the device owning `address`
  /// (the device memory of the call) when known, else current_device().
  int device_of_stream(StreamHandle stream, DevicePtr address) const {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = stream_devices_.find(stream);
      if (it != stream_devices_.end()) return it->second;
    }
    const int owner = address != 0 ? device_of_address(address) : -1;
    return owner >= 0 ? owner : current_device();
  }

  int device_of_event(EventHandle event) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = event_devices_.find(event);
    return it == event_devices_.end() ? 0 : it->second;
  }

  static std::string stream_args(StreamHandle stream, int device) {
    return "stream=" + hex(reinterpret_cast<std::uintptr_t>(stream)) +
           ", device=" + std::to_string(device);
  }
  static std::string event_args(EventHandle event, int device) {
    return "event=" + hex(reinterpret_cast<std::uintptr_t>(event)) +
           ", device=" + std::to_string(device);
  }

  const CudaApi api_;
  /// One slot per device, made by the constructor; a context is retained under context_mutex_.
  std::unique_ptr<DeviceSlot[]> devices_;
  int device_count_ = 0;
  mutable std::mutex context_mutex_;
  /// Cleared when a batch came back CUDA_ERROR_NOT_SUPPORTED: per-range copies from then on.
  std::atomic<bool> batch_supported_{true};

  mutable std::mutex mutex_;
  std::map<DevicePtr, Range> reservations_;
  std::unordered_map<PhysicalHandle, Range> handles_;
  std::unordered_map<StreamHandle, int> stream_devices_;
  std::unordered_map<EventHandle, int> event_devices_;
  std::unordered_map<void*, int> host_devices_;
};

}  // namespace

std::unique_ptr<Driver> make_cuda_driver() {
  return std::make_unique<CudaDriver>(CudaApi::load(CudaApi::default_library()));
}

}  // namespace acb::alloc
