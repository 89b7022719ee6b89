// GPU identities. A broker device carries the UUID of its GPU, in the text
// form nvidia-smi -L and CUDA_VISIBLE_DEVICES use ("GPU-" and 8-4-4-4-12
// lowercase hex digits of CUDA's 16 bytes, cuDeviceGetUuid_v2); a client
// names its GPU by that UUID (hello "device_uuid"), so a process whose
// CUDA_VISIBLE_DEVICES lists UUIDs (Kubernetes, MIG) takes part on its own
// GPU's device. A device that is not a probed GPU (an emulated device, one
// given with --device) gets a synthetic UUID made from its name: stable
// across runs and equal on every side that names the device the same way.
//
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace acb::broker {

/// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" for CUDA's 16 UUID bytes.
std::string gpu_uuid_text(const std::array<std::uint8_t, 16>& bytes);
/// The synthetic UUID of the device named `name` (same text form).
std::string synthetic_gpu_uuid(const std::string& name);

/// The index in `uuids` of the one UUID that `wanted` names: the whole UUID or
/// an unambiguous prefix of it (as CUDA reads CUDA_VISIBLE_DEVICES), case
/// ignored. kNoUuidMatch when none does, kAmbiguousUuid when several do.
inline constexpr int kNoUuidMatch = -1;
inline constexpr int kAmbiguousUuid = -2;
int match_gpu_uuid(const std::string& wanted, const std::vector<std::string>& uuids);

}  // namespace acb::broker
