// GPU identities: the text form of CUDA's UUID bytes, the synthetic UUID of a
// device that is not a probed GPU, and how a CUDA_VISIBLE_DEVICES entry
// (a whole UUID or a prefix) picks one device.
#include <set>
#include <string>
#include <vector>

#include "acb_catch.hpp"
#include "broker_server/device_uuid.h"

using namespace acb::broker;

TEST_CASE("a UUID's bytes read as nvidia-smi writes them", "[broker][devices][uuid]") {
  std::array<std::uint8_t, 16> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(0x10 * (i % 16) + i);
  CHECK(gpu_uuid_text(bytes) == "GPU-00112233-4455-6677-8899-aabbccddeeff");
}

TEST_CASE("a synthetic UUID is stable, in the same form, and differs between names", "[broker][devices][uuid]") {
  const std::string a = synthetic_gpu_uuid("acb");
  CHECK(a == synthetic_gpu_uuid("acb"));
  CHECK(a.size() == std::string("GPU-00112233-4455-6677-8899-aabbccddeeff").size());
  CHECK(a.rfind("GPU-", 0) == 0);
  std::set<std::string> seen;
  for (const char* name : {"acb", "acb2", "0", "1", "2", "bca"}) seen.insert(synthetic_gpu_uuid(name));
  CHECK(seen.size() == 6);
}

TEST_CASE("a UUID or an unambiguous prefix of one names a device", "[broker][devices][uuid]") {
  const std::vector<std::string> uuids = {"GPU-8c1b2c3d-aaaa-bbbb-cccc-000000000000",
                                          "GPU-8c1b2c3d-aaaa-bbbb-cccc-000000000001",
                                          "GPU-f00d0000-0000-0000-0000-000000000000"};
  CHECK(match_gpu_uuid(uuids[1], uuids) == 1);
  CHECK(match_gpu_uuid("GPU-F00D", uuids) == 2);  // case ignored, a prefix is enough
  CHECK(match_gpu_uuid("GPU-8c1b", uuids) == kAmbiguousUuid);
  CHECK(match_gpu_uuid("GPU-dead", uuids) == kNoUuidMatch);
  CHECK(match_gpu_uuid("GPU-", uuids) == kNoUuidMatch);  // names nothing
  CHECK(match_gpu_uuid("", uuids) == kNoUuidMatch);
  CHECK(match_gpu_uuid(uuids[0] + "0", uuids) == kNoUuidMatch);  // longer than any
}
