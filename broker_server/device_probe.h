// The node's GPUs as broker devices, for a broker started without --device
// (the embedded one): one device per GPU the CUDA driver reports, named by
// its ordinal ("0", "1", ...), with the GPU's total memory as capacity and
// its UUID (cuDeviceGetUuid_v2, device_uuid.h), so the memory-aware policy
// is on and a process on GPU i (by ordinal or by UUID) takes part on broker
// device i.
//
// The driver is opened at run time (libcuda.so.1, or ACB_CUDA_LIBRARY):
// without a GPU, a driver or a device the probe finds nothing, and the
// broker falls back to its single default device.
//
// Thread-safety: call from one thread (the broker's start-up).
#pragma once

#include <string>
#include <vector>

#include "broker_server/config.h"

namespace acb::broker {

/// The GPUs, or an empty list (with `why_none` saying why) when none can be found.
std::vector<DeviceSpec> probe_cuda_devices(std::string& why_none);

}  // namespace acb::broker
