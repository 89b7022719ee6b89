// Devices for a broker given none: the GPUs the CUDA driver reports (here a
// fake libcuda with FAKE_CUDA_DEVICES of them), and how load_config uses them.
#include <cstdlib>
#include <string>
#include <vector>

#include "acb_catch.hpp"
#include "broker_server/config.h"
#include "broker_server/device_probe.h"
#include "scoped_env.h"

using namespace acb::broker;

using acb_test::ScopedEnv;

TEST_CASE("the probe names one device per GPU, with its total memory and UUID", "[broker][devices]") {
  ScopedEnv env;
  env.set("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
  env.set("FAKE_CUDA_DEVICES", "3");
  std::string why;
  const std::vector<DeviceSpec> devices = probe_cuda_devices(why);
  REQUIRE(devices.size() == 3);
  for (std::size_t i = 0; i < devices.size(); ++i) {
    CHECK(devices[i].name == std::to_string(i));
    CHECK(devices[i].capacity_bytes == 64ull << 20);  // the fake's memory
    // cuDeviceGetUuid_v2's bytes in nvidia-smi's form (the fake: 0xac, 0xb0, ..., the ordinal)
    CHECK(devices[i].uuid == "GPU-acb00000-0000-0000-0000-00000000000" + std::to_string(i));
  }
}

TEST_CASE("without a GPU or a driver the probe finds nothing and says why", "[broker][devices]") {
  ScopedEnv env;
  std::string why;
  SECTION("no device") {
    env.set("ACB_CUDA_LIBRARY", ACB_FAKE_LIBCUDA);
    env.set("FAKE_CUDA_DEVICES", "0");
    CHECK(probe_cuda_devices(why).empty());
    CHECK(why.find("no device") != std::string::npos);
  }
  SECTION("no driver") {
    env.set("ACB_CUDA_LIBRARY", "/nonexistent/libcuda.so.1");
    CHECK(probe_cuda_devices(why).empty());
    CHECK(why.find("dlopen") != std::string::npos);
  }
}

TEST_CASE("load_config takes the detected devices only when none is configured or emulated",
          "[broker][devices][config]") {
  ScopedEnv env;
  env.set("ACB_EMULATED_DEVICE", nullptr);
  const DeviceDetector two_gpus = [] {
    return std::vector<DeviceSpec>{{"0", 80ull << 30}, {"1", 80ull << 30}};
  };
  const BrokerConfig detected = load_config(CommandLine{}, two_gpus);
  REQUIRE(detected.devices.size() == 2);
  CHECK(detected.devices[1].name == "1");
  CHECK(detected.devices[1].capacity_bytes == 80ull << 30);

  const BrokerConfig none_found = load_config(CommandLine{}, [] { return std::vector<DeviceSpec>{}; });
  REQUIRE(none_found.devices.size() == 1);
  CHECK(none_found.devices[0].name == "0");
  CHECK(none_found.devices[0].capacity_bytes == 0u);  // unknown, as before

  CommandLine flags;
  flags.flags["devices"] = nlohmann::json::array({"a:1GiB"});
  const BrokerConfig configured = load_config(flags, two_gpus);
  REQUIRE(configured.devices.size() == 1);
  CHECK(configured.devices[0].name == "a");

  env.set("ACB_EMULATED_DEVICE", "acbtest:512MiB");
  const BrokerConfig emulated = load_config(CommandLine{}, two_gpus);
  REQUIRE(emulated.devices.size() == 1);
  CHECK(emulated.devices[0].capacity_bytes == 512ull << 20);
}
