// BrokerClient against the real acb-broker (its path comes from CMake as
// ACB_BROKER_BINARY): the two halves of the protocol agree on grants,
// preemption, heartbeats, status and the admin trace.
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "acb_catch.hpp"
#include "broker_process.h"
#include "client/broker_client.h"

using acb::client::BrokerClient;
using acb::client::ClientOptions;
using namespace std::chrono_literals;

namespace {

ClientOptions on(const acb::test::BrokerProcess& broker, std::string name, std::string priority = "training") {
  ClientOptions o;
  o.port = broker.port();
  o.name = std::move(name);
  o.priority = std::move(priority);
  o.device = 0;
  return o;
}

const nlohmann::json& client_named(const nlohmann::json& status, const std::string& name) {
  for (const auto& c : status.at("clients")) {
    if (c.at("name") == name) return c;
  }
  throw std::runtime_error("no client named " + name + " in " + status.dump());
}

}  // namespace

TEST_CASE("an inference client preempts a training holder through the revoke callback", "[real-broker]") {
  acb::test::BrokerProcess broker(ACB_BROKER_BINARY, {"--device", "gpu:16GiB"});
  BrokerClient trainer(on(broker, "trainer"));
  BrokerClient server(on(broker, "server", "inference"));
  std::promise<acb::client::Revoke> revoked;
  trainer.on_revoke([&](const acb::client::Revoke& r) {
    trainer.release(1024);  // yield at once: this job has no state to offload
    revoked.set_value(r);
  });
  const auto lease = trainer.acquire();
  const auto granted = server.acquire(std::nullopt, 10000ms);
  auto revoke = revoked.get_future();
  REQUIRE(revoke.wait_for(5s) == std::future_status::ready);
  const auto r = revoke.get();
  CHECK(r.reason == "preempt");
  CHECK(r.lease == lease.lease);
  CHECK(granted.lease > lease.lease);
  const auto status = server.request({{"op", "status"}});
  CHECK(client_named(status, "trainer").at("preemptions") == 1);
  CHECK(client_named(status, "server").at("state") == "holding");
}

TEST_CASE("heartbeats from the I/O thread keep a busy holder alive past the timeout", "[real-broker]") {
  acb::test::BrokerProcess broker(ACB_BROKER_BINARY, {"--device", "gpu:16GiB", "--heartbeat-timeout-ms", "300"});
  BrokerClient busy(on(broker, "busy"));
  REQUIRE(busy.welcome().heartbeat_timeout_ms == 300);
  busy.acquire();
  // The scenario itself: the user thread computes (sends nothing) for three timeouts.
  std::this_thread::sleep_for(900ms);
  CHECK(busy.connected());
  const auto status = busy.request({{"op", "status"}});
  CHECK(client_named(status, "busy").at("state") == "holding");
  busy.release();
}

TEST_CASE("the admin role reads the lease trace", "[real-broker]") {
  acb::test::BrokerProcess broker(ACB_BROKER_BINARY, {"--device", "gpu:16GiB"});
  BrokerClient job(on(broker, "job"));
  for (int i = 0; i < 3; ++i) {
    job.acquire();
    job.release();
  }
  job.request({{"op", "status"}});  // the releases were handled before this reply
  ClientOptions admin_options = on(broker, "admin");
  admin_options.admin = true;
  BrokerClient admin(admin_options);
  const auto trace = admin.request({{"op", "trace"}});
  REQUIRE(trace.at("slices").size() == 3);
  for (const auto& s : trace.at("slices")) {
    CHECK(s.at("name") == "job");
    CHECK(s.at("end_us").get<std::uint64_t>() >= s.at("start_us").get<std::uint64_t>());
  }
  CHECK_THROWS_WITH(job.request({{"op", "trace"}}), acb_test::has_substring("admin"));
}
