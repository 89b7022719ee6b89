// A real Server on loopback (one io_context thread, as in acb-broker), driven
// by blocking test clients: leases, authentication, protocol errors that close
// only the offending connection, deadlines acted on when due, the metrics
// endpoint, many clients, and a clean stop (LeakSanitizer checks that nothing
// outlives it).
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "acb_catch.hpp"
#include "server_test_support.h"

using namespace acb::broker;
using namespace acb::broker::test;
using nlohmann::json;

TEST_CASE("leases pass from holder to waiter on release and on disconnect") {
  RunningServer server;
  TestClient a(server.port());
  auto b_owner = std::make_unique<TestClient>(server.port());
  TestClient& b = *b_owner;
  const auto wa = a.hello("a");
  const auto wb = b.hello("b");
  CHECK(wa["device"] == 0);
  CHECK(wa["device_capacity_bytes"] == 1ull << 30);
  CHECK(wa["heartbeat_interval_ms"].get<int>() > 0);
  CHECK(wa["client_id"] != wb["client_id"]);
  a.send({{"op", "acquire"}});
  const auto g1 = a.expect("grant");
  CHECK(g1["quantum_ms"] == 60000);
  b.send({{"op", "acquire"}});
  b.send({{"op", "status"}, {"seq", 1}});  // one connection's frames are handled in order:
  b.expect("status");                       // b is queued now
  // An equal waiter: a is asked at once to yield when idle (no deadline).
  const auto revoke = a.expect("revoke");
  CHECK(revoke["lease"] == g1["lease"]);
  CHECK(revoke["reason"] == "share");
  CHECK_FALSE(revoke.contains("deadline_ms"));
  a.send({{"op", "status"}, {"seq", 9}});
  const auto status = a.expect("status");
  CHECK(status["seq"] == 9);
  CHECK(status["devices"][0]["holder"] == wa["client_id"]);
  CHECK(status["devices"][0]["queue"] == json::array({wb["client_id"]}));
  a.send({{"op", "release"}, {"resident_bytes", 0}});
  const auto g2 = b.expect("grant");
  CHECK(g2["lease"].get<std::uint64_t>() > g1["lease"].get<std::uint64_t>());

  TestClient c(server.port());
  c.hello("c");
  c.send({{"op", "acquire"}});
  { TestClient gone(server.port()); }  // a connection that never says hello is harmless
  b.send({{"op", "heartbeat"}});
  b_owner.reset();  // b's connection closes: its lease goes to c at once
  c.expect("grant");
}

TEST_CASE("the ranks of a gang named in hello are placed apart and granted together") {
  BrokerConfig config = RunningServer::make_config();
  config.devices = {DeviceSpec{"0", 1ull << 30}, DeviceSpec{"1", 1ull << 30}};
  RunningServer server(config);
  TestClient a(server.port());
  auto b_owner = std::make_unique<TestClient>(server.port());
  TestClient& b = *b_owner;
  const json rank = {{"gang", "run-1"}, {"local_world_size", 2}};
  const auto wa = a.hello("rank0", kTokens.client, "client", rank);
  const auto wb = b.hello("rank1", kTokens.client, "client", rank);
  CHECK(wa["device"] != wb["device"]);
  a.send({{"op", "acquire"}});
  a.send({{"op", "status"}, {"seq", 1}});  // handled in order: no grant comes before it
  const json listed = a.expect("status")["clients"];
  REQUIRE(listed.size() == 2);
  CHECK(listed[0]["state"] == "waiting");
  for (const json& c : listed) {
    CHECK(c["gang"] == "run-1");  // what acb status shows of a rank
    CHECK_FALSE(c.contains("local_rank"));  // not said in this hello
  }
  b.send({{"op", "acquire"}});
  a.expect("grant");
  b.expect("grant");
  b_owner.reset();  // a rank leaves: the other is asked to give its device back
  const auto revoke = a.expect("revoke");
  CHECK(revoke["reason"] == "gang");
  CHECK(revoke["deadline_ms"] == config.arbiter.quantum_deadline_ms);
}

TEST_CASE("the quantum's end and a revoke deadline are acted on when due, with no periodic tick") {
  // Every connection has authenticated and there is no --idle-exit-s, so no
  // housekeeping timer runs: only the timer armed for Arbiter::next_wakeup
  // can wake the broker. Were it not armed, neither the quantum revoke nor
  // the disconnect would ever come, and the bounded reads below would fail.
  auto config = RunningServer::make_config();
  config.arbiter.quantum_ms = 300;
  config.arbiter.quantum_deadline_ms = 200;
  config.arbiter.revoke_grace_ms = 200;
  RunningServer server(config);
  TestClient a(server.port());
  TestClient b(server.port());
  a.hello("a");
  b.hello("b");
  using clock = std::chrono::steady_clock;
  const auto since = [start = clock::now()] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start).count();
  };
  a.send({{"op", "acquire"}});  // the lease starts after `start`: nothing below can be due earlier
  const auto grant = a.expect("grant");
  b.send({{"op", "acquire"}});
  auto quantum = a.expect("revoke");  // bounded, as every read: kTimeoutMs
  // An equal waiter inside the quantum is answered at once, without a deadline.
  if (quantum["reason"] == "share") quantum = a.expect("revoke");
  CHECK(quantum["reason"] == "quantum");
  CHECK(quantum["lease"] == grant["lease"]);
  CHECK(quantum["deadline_ms"] == 200);
  CHECK(since() >= 300);
  // a never releases: past the deadline and the grace it is disconnected, and b granted.
  const auto reason = a.expect_error_then_close();
  CHECK(reason.find("not released within its revoke deadline") != std::string::npos);
  CHECK(since() >= 300 + 200 + 200);
  b.expect("grant");
}

TEST_CASE("authentication: wrong tokens and the admin role") {
  RunningServer server;
  {
    // A client without the token: the broker's proof does not verify with
    // its guess, and its own proof is refused.
    TestClient bad(server.port());
    bool proved = true;
    bad.challenge("bad", "nope", "client", proved);
    CHECK_FALSE(proved);
    bad.auth("nope");
    CHECK(bad.expect_error_then_close() == "authentication failed");
  }
  {
    // Role admin is proven with the admin token only.
    TestClient fake_admin(server.port());
    bool proved = true;
    fake_admin.challenge("fake", kTokens.client, "admin", proved);
    CHECK_FALSE(proved);  // the broker proved the admin token, not the client one
    fake_admin.auth(kTokens.client);
    CHECK(fake_admin.expect_error_then_close() == "authentication failed");
  }
  {
    // And role client with the client token only: the admin token proves nothing else.
    TestClient admin_as_client(server.port());
    bool proved = true;
    admin_as_client.challenge("x", kTokens.admin, "client", proved);
    CHECK_FALSE(proved);
    admin_as_client.auth(kTokens.admin);
    CHECK(admin_as_client.expect_error_then_close() == "authentication failed");
  }
  {
    // Protocol version 1 sent the token in clear: refused even with the right token.
    TestClient v1(server.port());
    v1.send({{"op", "hello"}, {"versions", {1}}, {"token", kTokens.client}});
    const auto reason = v1.expect_error_then_close();
    CHECK(reason.find("token in clear") != std::string::npos);
    CHECK(reason.find("upgrade") != std::string::npos);
  }
  TestClient client(server.port());
  client.hello("c");
  client.send({{"op", "set_quantum"}, {"seq", 1}, {"quantum_ms", 5}});
  auto refused = client.expect("error");
  CHECK(refused["seq"] == 1);
  CHECK(refused["reason"].get<std::string>().find("admin role") != std::string::npos);
  client.send({{"op", "status"}, {"seq", 2}});
  CHECK(client.expect("status")["quantum_ms"] == 60000);  // still connected, nothing changed

  TestClient admin(server.port());
  const auto w = admin.hello("admin", kTokens.admin, "admin");
  CHECK(w["device"] == -1);
  admin.send({{"op", "set_quantum"}, {"seq", 3}, {"quantum_ms", 5}});
  CHECK(admin.expect("ok")["seq"] == 3);
  admin.send({{"op", "add_device"}, {"seq", 4}, {"capacity_bytes", 1 << 20}, {"name", "x"}});
  CHECK(admin.expect("ok")["device"] == 1);
  admin.send({{"op", "drain_device"}, {"seq", 5}, {"device", 42}});
  auto failed = admin.expect("error");
  CHECK(failed["seq"] == 5);
  admin.send({{"op", "status"}, {"seq", 6}});
  const auto status = admin.expect("status");
  CHECK(status["quantum_ms"] == 5);
  CHECK(status["devices"].size() == 2);
}

TEST_CASE("a connection that got a challenge and never answers is closed like one without hello") {
  auto config = RunningServer::make_config();
  config.arbiter.heartbeat_timeout_ms = 100;  // checked every Server::kHousekeepingPeriodUs (0.5 s)
  RunningServer server(config);
  TestClient silent(server.port());
  bool proved = false;
  silent.challenge("silent", kTokens.client, "client", proved);
  CHECK(proved);
  const auto error = silent.recv(3000);  // bounded: a second check at most after the timeout
  REQUIRE(error);
  CHECK((*error)["op"] == "error");
  CHECK((*error)["reason"] == "no auth within 100 ms");
  CHECK_FALSE(silent.recv());
}

TEST_CASE("protocol errors close only the connection that made them") {
  RunningServer server;
  TestClient bystander(server.port());
  bystander.hello("bystander");
  bystander.send({{"op", "acquire"}});
  bystander.expect("grant");

  SECTION("oversized length") {
    TestClient bad(server.port());
    bad.send_raw(std::string("\x7f\xff\xff\xff", 4));
    CHECK(bad.expect_error_then_close().find("exceeds the maximum") != std::string::npos);
  }
  SECTION("garbage JSON") {
    TestClient bad(server.port());
    bad.send_raw(acb::wire::encode_frame("\xff\xfe garbage"));
    CHECK(bad.expect_error_then_close().find("JSON") != std::string::npos);
  }
  SECTION("a frame before hello") {
    TestClient bad(server.port());
    bad.send({{"op", "acquire"}});
    CHECK(bad.expect_error_then_close().find("hello") != std::string::npos);
  }
  SECTION("a second hello") {
    TestClient bad(server.port());
    bad.hello("twice");
    bad.send({{"op", "hello"}, {"versions", {2}}, {"client_nonce", std::string(64, '0')}});
    CHECK(bad.expect_error_then_close().find("second") != std::string::npos);
  }
  SECTION("a second auth") {
    TestClient bad(server.port());
    bad.hello("twice");
    bad.auth(kTokens.client);
    CHECK(bad.expect_error_then_close().find("second \"auth\"") != std::string::npos);
  }
  SECTION("auth before hello") {
    TestClient bad(server.port());
    bad.send({{"op", "auth"}, {"client_proof", std::string(64, '0')}});
    CHECK(bad.expect_error_then_close().find("first frame must be \"hello\"") != std::string::npos);
  }
  SECTION("anything but auth after the challenge") {
    TestClient bad(server.port());
    bool proved = false;
    bad.challenge("eager", kTokens.client, "client", proved);
    bad.send({{"op", "acquire"}});
    CHECK(bad.expect_error_then_close().find("must be \"auth\", not \"acquire\"") != std::string::npos);
  }
  SECTION("unknown op and wrong member type") {
    TestClient bad(server.port());
    bad.hello("bad");
    bad.send({{"op", "residency"}, {"resident_bytes", "many"}});
    CHECK(bad.expect_error_then_close().find("resident_bytes") != std::string::npos);
    TestClient worse(server.port());
    worse.hello("worse");
    worse.send({{"op", "explode"}});
    CHECK(worse.expect_error_then_close().find("unknown op") != std::string::npos);
  }
  SECTION("a truncated frame, then close") {
    { TestClient bad(server.port()); bad.send_raw(acb::wire::encode_message({{"op", "hello"}}).substr(0, 7)); }
  }
  bystander.send({{"op", "status"}, {"seq", 1}});
  const auto status = bystander.expect("status");
  CHECK(status["devices"][0]["holder"] == status["clients"][0]["client_id"]);
  CHECK(status["clients"].size() == 1);
}

TEST_CASE("the metrics endpoint answers GET /metrics") {
  RunningServer server;
  TestClient c(server.port());
  c.hello("m");
  c.send({{"op", "acquire"}});
  c.expect("grant");
  const auto get = [&](const std::string& path) { return http_get(server.metrics_port(), path); };
  const std::string ok = get("/metrics");
  CHECK(ok.rfind("HTTP/1.1 200 OK", 0) == 0);
  CHECK(ok.find("text/plain; version=0.0.4") != std::string::npos);
  CHECK(ok.find("\nacb_clients 1\n") != std::string::npos);
  CHECK(ok.find("\nacb_leases_granted_total 1\n") != std::string::npos);
  CHECK(get("/other").rfind("HTTP/1.1 404", 0) == 0);
}

TEST_CASE("two hundred clients each get the lease once, in turn") {
  RunningServer server;
  constexpr int kClients = 200;
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<TestClient>(server.port()));
    clients.back()->hello("c" + std::to_string(i));
  }
  // Connections are read in no particular order: a status round trip after
  // each acquire makes the queue order the order of this loop.
  std::optional<json> first_grant;
  for (auto& c : clients) {
    c->send({{"op", "acquire"}});
    c->send({{"op", "status"}, {"seq", 1}});
    if (!first_grant) first_grant = c->expect("grant");
    c->expect("status");
  }
  // FIFO within one priority: each holder releases and the next in line is
  // granted; every holder but the last was asked to yield, someone waiting.
  std::uint64_t last_lease = 0;
  for (auto& c : clients) {
    const auto grant = c == clients.front() ? *first_grant : c->expect("grant");
    CHECK(grant["lease"].get<std::uint64_t>() > last_lease);
    last_lease = grant["lease"];
    if (c != clients.back()) CHECK(c->expect("revoke")["lease"] == grant["lease"]);
    c->send({{"op", "release"}});
  }
  clients.front()->send({{"op", "status"}, {"seq", 1}});
  const auto status = clients.front()->expect("status");
  CHECK(status["clients"].size() == kClients);
  CHECK(status["devices"][0]["holder"].is_null());
}

TEST_CASE("SIGHUP's reload with a FIFO in place of the config returns at once; the broker goes on") {
  char dir_template[] = "/tmp/acb-reload-test-XXXXXX";
  REQUIRE(::mkdtemp(dir_template) != nullptr);
  const std::string fifo = std::string(dir_template) + "/broker.json";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);  // nobody writes it: a blocking open never returns
  CommandLine command_line;
  command_line.config_file = fifo;
  auto server = std::make_unique<RunningServer>(RunningServer::make_config(), command_line);
  const bool returned = server->reload(2000);
  if (!returned) {
    // Unblock the server's thread (open the FIFO for writing) so that the test can end.
    std::FILE* writer = std::fopen(fifo.c_str(), "w");
    if (writer) std::fclose(writer);
  }
  REQUIRE(returned);
  TestClient c(server->port());
  c.hello("after-reload");
  c.send({{"op", "status"}, {"seq", 1}});
  CHECK(c.expect("status")["seq"] == 1);
  server.reset();
  ::unlink(fifo.c_str());
  ::rmdir(dir_template);
}
