// probe_cuda_devices (see device_probe.h).
#include "broker_server/device_probe.h"

#include <array>
#include <cstring>
#include <exception>

#include "alloc/cuda_api.h"
#include "broker_server/device_uuid.h"

namespace acb::broker {

std::vector<DeviceSpec> probe_cuda_devices(std::string& why_none) {
  std::vector<DeviceSpec> devices;
  try {
    const alloc::CudaApi api = alloc::CudaApi::load(alloc::CudaApi::default_library());
    // cuInit in the broker's own process: the jobs' processes are untouched.
    if (CUresult r = api.cuInit(0); r != CUDA_SUCCESS) {
      why_none = "cuInit: " + api.error_text(r);
      return {};
    }
    int count = 0;
    if (CUresult r = api.cuDeviceGetCount(&count); r != CUDA_SUCCESS) {
      why_none = "cuDeviceGetCount: " + api.error_text(r);
      return {};
    }
    for (int ordinal = 0; ordinal < count; ++ordinal) {
      CUdevice device = 0;
      std::size_t total = 0;
      if (CUresult r = api.cuDeviceGet(&device, ordinal); r != CUDA_SUCCESS) {
        why_none = "cuDeviceGet(" + std::to_string(ordinal) + "): " + api.error_text(r);
        return {};
      }
      if (CUresult r = api.cuDeviceTotalMem(&total, device); r != CUDA_SUCCESS) {
        why_none = "cuDeviceTotalMem(" + std::to_string(ordinal) + "): " + api.error_text(r);
        return {};
      }
      CUuuid uuid{};
      if (CUresult r = api.cuDeviceGetUuid(&uuid, device); r != CUDA_SUCCESS) {
        why_none = "cuDeviceGetUuid(" + std::to_string(ordinal) + "): " + api.error_text(r);
        return {};
      }
      std::array<std::uint8_t, 16> bytes{};
      std::memcpy(bytes.data(), uuid.bytes, bytes.size());
      devices.push_back(DeviceSpec{std::to_string(ordinal), total, gpu_uuid_text(bytes)});
    }
    if (devices.empty()) why_none = "the CUDA driver reports no device";
  } catch (const std::exception& e) {
    why_none = e.what();
  }
  return devices;
}

}  // namespace acb::broker
