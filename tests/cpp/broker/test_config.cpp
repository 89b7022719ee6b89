// Flags, capacities, the config file's members, and how they merge.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "acb_catch.hpp"
#include "broker_server/config.h"
#include "broker_server/config_file.h"

using namespace acb::broker;
using nlohmann::json;

namespace {

// The ConfigError's message, or "" when f does not throw one (Catch2 v2 and v3 name matchers differently).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

CommandLine parse(std::vector<const char*> args) {
  args.insert(args.begin(), "acb-broker");
  return parse_command_line(static_cast<int>(args.size()), args.data());
}

}  // namespace

TEST_CASE("capacities accept binary and decimal units and plain bytes") {
  CHECK(parse_capacity("80GiB") == 80ull << 30);
  CHECK(parse_capacity("512MiB") == 512ull << 20);
  CHECK(parse_capacity("512mib") == 512ull << 20);
  CHECK(parse_capacity("4096") == 4096u);
  CHECK(parse_capacity("1.5GiB") == 3ull << 29);
  CHECK(parse_capacity("2GB") == 2000000000ull);
  CHECK(parse_capacity("1TiB") == 1ull << 40);
  CHECK(parse_capacity("0") == 0u);
  CHECK_THROWS_AS(parse_capacity(""), ConfigError);
  CHECK_THROWS_AS(parse_capacity("GiB"), ConfigError);
  CHECK_THROWS_AS(parse_capacity("12XB"), ConfigError);
  CHECK_THROWS_AS(parse_capacity("-1"), ConfigError);
  CHECK_THROWS_AS(parse_capacity("1.2.3GiB"), ConfigError);
  CHECK_THROWS_AS(parse_capacity("99999999999999999999"), ConfigError);
  CHECK_THROWS_AS(parse_capacity("99999999999TiB"), ConfigError);
}

TEST_CASE("device specs are NAME[:CAPACITY]") {
  auto d = parse_device_spec("gpu0:80GiB");
  CHECK(d.name == "gpu0");
  CHECK(d.capacity_bytes == 80ull << 30);
  CHECK(parse_device_spec("gpu1").capacity_bytes == 0u);
  CHECK_THROWS_AS(parse_device_spec(":1GiB"), ConfigError);
  CHECK_THROWS_AS(parse_device_spec("x:lots"), ConfigError);
}

TEST_CASE("flags become config members and win over the file") {
  auto cl = parse({"--port", "0", "--metrics-port=9", "--device", "0:1GiB", "--device", "1:2GiB", "--quantum-ms", "50",
                   "--heartbeat-timeout-ms", "700", "--idle-exit-s", "3", "--busy-poll-us", "0", "--log-level", "debug",
                   "--config", "f.json"});
  CHECK(cl.config_file == "f.json");
  json merged = {{"quantum_ms", 999}, {"revoke_grace_ms", 123}, {"devices", json::array({"z:1"})}};
  for (const auto& [k, v] : cl.flags.items()) merged[k] = v;
  auto c = config_from_json(merged);
  CHECK(c.port == 0);
  CHECK(c.metrics_port == 9);
  CHECK(c.arbiter.quantum_ms == 50u);
  CHECK(c.arbiter.revoke_grace_ms == 123u);
  CHECK(c.arbiter.heartbeat_timeout_ms == 700u);
  CHECK(c.idle_exit_s == 3u);
  CHECK(c.busy_poll_us == 0u);
  CHECK(config_from_json(json::object()).busy_poll_us == 50u);
  CHECK_THROWS_AS(config_from_json(json{{"busy_poll_us", 2000000}}), ConfigError);
  CHECK(c.debug);
  REQUIRE(c.devices.size() == 2);
  CHECK(c.devices[1].name == "1");
  CHECK(c.devices[1].capacity_bytes == 2ull << 30);
}

TEST_CASE("bad flags and members are named") {
  CHECK(error_of([&] { (void)parse({"--nope", "1"}); }).find("--nope") != std::string::npos);
  CHECK(error_of([&] { (void)parse({"--port"}); }).find("needs a value") != std::string::npos);
  CHECK(error_of([&] { (void)parse({"--port", "x"}); }).find("--port") != std::string::npos);
  CHECK(error_of([&] { (void)parse({"--log-level", "loud"}); }).find("log-level") != std::string::npos);
  CHECK(error_of([&] { (void)parse({"stray"}); }).find("stray") != std::string::npos);
  CHECK(parse({"--help"}).help);
  CHECK(error_of([&] { (void)config_from_json({{"port", 70000}}); }).find("port") != std::string::npos);
  CHECK(error_of([&] { (void)config_from_json({{"quantum_ms", 0}}); }).find("quantum_ms") != std::string::npos);
  CHECK(error_of([&] { (void)config_from_json({{"quantum_ms", -5}}); }).find("quantum_ms") != std::string::npos);
  CHECK(error_of([&] { (void)config_from_json({{"host", 1}}); }).find("host") != std::string::npos);
  CHECK(error_of([&] { (void)config_from_json({{"colour", "blue"}}); }).find("colour") != std::string::npos);
  CHECK(error_of([&] { (void)config_from_json({{"devices", "0:1GiB"}}); }).find("devices") != std::string::npos);
  CHECK_THROWS_AS(config_from_json(json::array()), ConfigError);
  auto c = config_from_json({{"devices", json::array({json{{"name", "a"}, {"capacity", "1GiB"}}, json{{"name", "b"}, {"capacity", 5}}})}});
  CHECK(c.devices[0].capacity_bytes == 1ull << 30);
  CHECK(c.devices[1].capacity_bytes == 5u);
}

TEST_CASE("without devices, one device \"0\" sized by ACB_EMULATED_DEVICE") {
  ::setenv("ACB_EMULATED_DEVICE", "acbtest:512MiB", 1);
  auto d = default_device();
  CHECK(d.name == "0");
  CHECK(d.capacity_bytes == 512ull << 20);
  ::setenv("ACB_EMULATED_DEVICE", "acbtest", 1);
  CHECK(default_device().capacity_bytes == 0u);
  ::setenv("ACB_EMULATED_DEVICE", "acbtest:huge", 1);
  CHECK(error_of([&] { (void)default_device(); }).find("ACB_EMULATED_DEVICE") != std::string::npos);
  ::unsetenv("ACB_EMULATED_DEVICE");
  auto c = load_config(CommandLine{});
  REQUIRE(c.devices.size() == 1);
  CHECK(c.devices[0].capacity_bytes == 0u);
  CHECK(arbiter_capacity(0) == kUnknownCapacityBytes);
  CHECK(reported_capacity(arbiter_capacity(0)) == 0u);
  CHECK(reported_capacity(arbiter_capacity(4096)) == 4096u);
}

TEST_CASE("durations and limits are bounded: out of range names the key, its bounds and the value") {
  for (const Bounded& b : {kQuantumMs, kHeartbeatTimeoutMs, kPreemptDeadlineMs, kQuantumDeadlineMs, kRevokeGraceMs,
                           kAgingMs, kIdleExitS, kBusyPollUs, kRevokePenaltyMs, kRevokeOffencesMax,
                           kRevokeOffenceWindowMs, kMaxConnections, kMaxConnectionsPerUid, kMaxQueuedOutputMib}) {
    INFO(b.key);
    CHECK_NOTHROW(config_from_json({{b.key, b.max}}));
    CHECK_NOTHROW(config_from_json({{b.key, b.min}}));
    const std::string why = error_of([&] { (void)config_from_json({{b.key, b.max + 1}}); });
    CHECK(why.find(std::string("\"") + b.key + "\"") != std::string::npos);
    CHECK(why.find(std::to_string(b.max + 1)) != std::string::npos);
    CHECK(why.find("[" + std::to_string(b.min) + ", " + std::to_string(b.max) + "]") != std::string::npos);
  }
  // 2^63 ms would overflow as microseconds: refused, not wrapped.
  CHECK_FALSE(error_of([&] { (void)config_from_json({{"quantum_ms", std::uint64_t{1} << 63}}); }).empty());
  CHECK(error_of([&] { (void)load_config(parse({"--revoke-grace-ms", "18446744073709551"})); })
            .find("revoke_grace_ms") != std::string::npos);
  CHECK(load_config(parse({"--max-queued-output-mib", "3"})).max_queued_output_mib == 3);
  CHECK(config_from_json(json::object()).max_queued_output_mib == 64);
}

TEST_CASE("the config file must be a regular file of bounded size; a FIFO is refused at once") {
  char dir_template[] = "/tmp/acb-config-test-XXXXXX";
  REQUIRE(::mkdtemp(dir_template) != nullptr);
  const std::string dir = dir_template;
  const std::string fifo = dir + "/fifo.json";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CommandLine cl;
  cl.config_file = fifo;
  // Nobody writes the FIFO: a blocking open would never return.
  const auto start = std::chrono::steady_clock::now();
  const std::string why = error_of([&] { (void)load_config(cl); });
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  CHECK(why.find(fifo) != std::string::npos);
  CHECK(why.find("not a regular file") != std::string::npos);

  const std::string big = dir + "/big.json";
  {
    std::FILE* f = std::fopen(big.c_str(), "w");
    REQUIRE(f != nullptr);
    const std::string spaces(kMaxConfigFileBytes, ' ');
    std::fputs(("{" + spaces + "}").c_str(), f);
    std::fclose(f);
  }
  cl.config_file = big;
  CHECK(error_of([&] { (void)load_config(cl); }).find(std::to_string(kMaxConfigFileBytes)) != std::string::npos);
  cl.config_file = dir + "/missing.json";
  CHECK(error_of([&] { (void)load_config(cl); }).find("missing.json") != std::string::npos);
  ::unlink(fifo.c_str());
  ::unlink(big.c_str());
  ::rmdir(dir.c_str());
}
