// BrokerClient against FakeBroker over loopback: handshake, lease life cycle,
// callbacks on the I/O thread, seq-matched requests, heartbeats, failures.
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "acb_catch.hpp"
#include "client/broker_client.h"
#include "common/hex.h"
#include "fake_broker.h"

using acb::client::BrokerClient;
using acb::client::BrokerError;
using acb::client::ClientOptions;
using acb::client::LeaseRejected;
using acb::test::FakeBroker;
using namespace std::chrono_literals;

namespace {

ClientOptions options_for(const FakeBroker& broker, std::string name = "job") {
  ClientOptions o;
  o.port = broker.port();
  o.token = "test-token";
  o.name = std::move(name);
  o.connect_timeout = 2000ms;
  return o;
}

// Grants every acquire at once with an increasing lease number.
void grant_on_acquire(FakeBroker& broker) {
  auto lease = std::make_shared<std::atomic<std::uint64_t>>(0);
  broker.set_handler([lease](FakeBroker& b, int conn, const nlohmann::json& m) {
    if (m["op"] == "acquire") b.send(conn, {{"op", "grant"}, {"device", 0}, {"lease", ++*lease}, {"quantum_ms", 50}});
  });
}

bool holds_message(const std::string& what, const std::string& needle) {
  return what.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("hello carries the options and welcome is parsed", "[client]") {
  FakeBroker broker({.token = "test-token", .heartbeat_interval_ms = 0, .capacity_bytes = 8ull << 30});
  auto o = options_for(broker, "trainer");
  o.priority = "inference";
  o.need_bytes = 123456;
  o.device = 0;
  BrokerClient client(o);
  CHECK(client.connected());
  CHECK(client.welcome().client_id == 100);
  CHECK(client.welcome().device == 0);
  CHECK(client.welcome().device_capacity_bytes == (8ull << 30));
  const auto hellos = broker.hellos();
  REQUIRE(hellos.size() == 1);
  const auto& h = hellos[0];
  CHECK(h["name"] == "trainer");
  CHECK(h["priority"] == "inference");
  CHECK(h["need_bytes"] == 123456);
  CHECK(h["device"] == 0);
  CHECK(h["role"] == "client");
  CHECK(h["versions"] == nlohmann::json::array({2}));
  CHECK(h["pid"].get<long>() > 0);
  CHECK_FALSE(h.contains("fixed"));

  o.fixed = true;  // a process bound to its GPU
  BrokerClient fixed_client(o);
  const auto both = broker.hellos();
  REQUIRE(both.size() == 2);
  CHECK(both[1]["fixed"] == true);
  CHECK(both[1]["device"] == 0);

  // A GPU named by UUID (CUDA_VISIBLE_DEVICES=GPU-...): the broker finds the device.
  o.device = -1;
  o.device_uuid = "GPU-8c1b2c3d";
  BrokerClient by_uuid(o);
  const auto three = broker.hellos();
  REQUIRE(three.size() == 3);
  CHECK(three[2]["device_uuid"] == "GPU-8c1b2c3d");
  CHECK(three[2]["device"] == -1);
  CHECK(three[2]["fixed"] == true);
  CHECK_FALSE(both[0].contains("device_uuid"));
}

TEST_CASE("a rank of a multi-process job names its gang in hello, and no other client does", "[client][gang]") {
  FakeBroker broker({.token = "test-token", .heartbeat_interval_ms = 0});
  auto o = options_for(broker, "rank");
  BrokerClient single(o);
  o.gang = {.job = "run-7f3a", .local_world_size = 2, .local_rank = 1};
  BrokerClient rank(o);
  o.gang.local_rank = -1;  // LOCAL_RANK not said: the broker places the rank
  BrokerClient unranked(o);
  const auto hellos = broker.hellos();
  REQUIRE(hellos.size() == 3);
  for (const char* member : {"gang", "local_world_size", "local_rank"}) CHECK_FALSE(hellos[0].contains(member));
  CHECK(hellos[1]["gang"] == "run-7f3a");
  CHECK(hellos[1]["local_world_size"] == 2);
  CHECK(hellos[1]["local_rank"] == 1);
  CHECK(hellos[2]["gang"] == "run-7f3a");
  CHECK(hellos[2]["local_world_size"] == 2);
  CHECK_FALSE(hellos[2].contains("local_rank"));
}

TEST_CASE("the token never travels: hello brings a nonce, auth a proof made after the broker's", "[client][auth]") {
  FakeBroker broker;
  BrokerClient client(options_for(broker));
  const auto hellos = broker.hellos();
  REQUIRE(hellos.size() == 1);
  CHECK_FALSE(hellos[0].contains("token"));
  CHECK(hellos[0].dump().find("test-token") == std::string::npos);
  const auto nonce = acb::wire::parse_hex32(hellos[0].value("client_nonce", std::string()));
  REQUIRE(nonce);
  const auto auth = broker.wait_for("auth");
  REQUIRE(auth);
  CHECK(auth->dump().find("test-token") == std::string::npos);
  CHECK(acb::wire::parse_hex32(auth->value("client_proof", std::string())));
  // A second connection draws a fresh nonce: nothing from the first can be replayed.
  BrokerClient second(options_for(broker));
  CHECK(broker.hellos()[1]["client_nonce"] != hellos[0]["client_nonce"]);
}

TEST_CASE("a peer that cannot prove the token is not the broker: nothing is sent to it, nothing it says is used",
          "[client][auth]") {
  // What holds the port here knows no token: its challenge carries a forged
  // proof, and it sends a welcome and a grant straight after.
  FakeBroker impostor({.token = "test-token", .heartbeat_interval_ms = 0, .capacity_bytes = 1 << 20, .impostor = true});
  try {
    BrokerClient client(options_for(impostor));
    FAIL("trusted a peer that could not prove the token (client_id " + std::to_string(client.welcome().client_id) + ")");
  } catch (const BrokerError& e) {
    CHECK(holds_message(e.what(), "the process at 127.0.0.1:" + std::to_string(impostor.port()) +
                                      " is not the acb broker: it could not prove it holds the client token"));
  }
  // The client closed the connection; whatever it sent before arrived before the close.
  REQUIRE(impostor.wait_count("<closed>", 1));
  CHECK_FALSE(impostor.wait_count("auth", 1, 0ms));
  const auto hellos = impostor.hellos();
  REQUIRE(hellos.size() == 1);
  CHECK(hellos[0].dump().find("test-token") == std::string::npos);
}

TEST_CASE("a wrong token is a BrokerError: the broker's proof does not verify with it", "[client][auth]") {
  FakeBroker broker;
  auto o = options_for(broker);
  o.token = "wrong";
  try {
    BrokerClient client(o);
    FAIL("connected with a wrong token");
  } catch (const BrokerError& e) {
    CHECK(holds_message(e.what(), "could not prove it holds the client token"));
    CHECK(holds_message(e.what(), "ACB_TOKEN_DIR"));
  }
  REQUIRE(broker.wait_count("<closed>", 1));
  CHECK_FALSE(broker.wait_count("auth", 1, 0ms));
}

TEST_CASE("no broker listening is a BrokerError naming the address", "[client]") {
  std::uint16_t port = 0;
  { FakeBroker gone; port = gone.port(); }  // a port that was just free again
  ClientOptions o;
  o.port = port;
  o.token = "t";
  o.connect_timeout = 1000ms;
  try {
    BrokerClient client(o);
    FAIL("connected to nothing");
  } catch (const BrokerError& e) {
    CHECK(holds_message(e.what(), "no acb broker at 127.0.0.1:" + std::to_string(port)));
  }
}

TEST_CASE("acquire returns the grant and release reports residency", "[client]") {
  FakeBroker broker;
  grant_on_acquire(broker);
  BrokerClient client(options_for(broker));
  const auto g = client.acquire(4096);
  CHECK(g.lease == 1);
  CHECK(g.quantum_ms == 50);
  const auto acquire = broker.wait_for("acquire");
  REQUIRE(acquire);
  CHECK((*acquire)["need_bytes"] == 4096);
  client.release(777);
  const auto release = broker.wait_for("release");
  REQUIRE(release);
  CHECK((*release)["resident_bytes"] == 777);
  CHECK(client.acquire().lease == 2);  // the lease can be taken again
  client.release();
}

TEST_CASE("acquire blocks until the broker grants", "[client]") {
  FakeBroker broker;
  BrokerClient client(options_for(broker));
  auto waiting = std::async(std::launch::async, [&] { return client.acquire(); });
  REQUIRE(broker.wait_for("acquire"));
  CHECK(waiting.wait_for(50ms) == std::future_status::timeout);  // still queued at the broker
  broker.send(0, {{"op", "grant"}, {"device", 0}, {"lease", 42}, {"quantum_ms", 0}});
  REQUIRE(waiting.wait_for(5s) == std::future_status::ready);
  CHECK(waiting.get().lease == 42);
}

TEST_CASE("a second acquire while holding is refused locally", "[client]") {
  FakeBroker broker;
  grant_on_acquire(broker);
  BrokerClient client(options_for(broker));
  client.acquire();
  CHECK_THROWS_AS(client.acquire(), BrokerError);
  client.release();
}

TEST_CASE("an acquire with a larger need while holding is a growth request answered by a re-grant",
          "[client]") {
  FakeBroker broker;
  grant_on_acquire(broker);
  BrokerClient client(options_for(broker));
  CHECK(client.acquire(4096).lease == 1);
  REQUIRE(broker.wait_for("acquire"));
  CHECK(client.acquire(8192).lease == 2);  // the broker's re-grant ends the growth wait
  const auto growth = broker.wait_for("acquire");
  REQUIRE(growth);
  CHECK((*growth)["need_bytes"] == 8192);
  CHECK_THROWS_AS(client.acquire(), BrokerError);  // still holding: a plain acquire is refused
  client.release();
}

TEST_CASE("reject becomes LeaseRejected with the reason", "[client]") {
  FakeBroker broker;
  broker.set_handler([](FakeBroker& b, int conn, const nlohmann::json& m) {
    if (m["op"] == "acquire") b.send(conn, {{"op", "reject"}, {"reason", "need 99 GiB above capacity 80 GiB"}});
  });
  BrokerClient client(options_for(broker));
  try {
    client.acquire(99ull << 30);
    FAIL("acquire was not rejected");
  } catch (const LeaseRejected& e) {
    CHECK(holds_message(e.what(), "need 99 GiB above capacity 80 GiB"));
  }
  CHECK(client.connected());
}

TEST_CASE("acquire with a timeout withdraws the request", "[client]") {
  FakeBroker broker;
  BrokerClient client(options_for(broker));
  CHECK_THROWS_WITH(client.acquire(std::nullopt, 30ms), acb_test::has_substring("no grant within 30 ms"));
  REQUIRE(broker.wait_for("acquire"));
  REQUIRE(broker.wait_for("release"));  // the withdrawal
  // A late grant for the withdrawn request does not count as holding; a new acquire waits for its own.
  broker.send(0, {{"op", "grant"}, {"device", 0}, {"lease", 5}});
  grant_on_acquire(broker);
  CHECK(client.acquire(std::nullopt, 5000ms).lease >= 1);
}

TEST_CASE("losing the connection wakes a waiting acquire", "[client]") {
  FakeBroker broker;
  BrokerClient client(options_for(broker));
  auto waiting = std::async(std::launch::async, [&] { return client.acquire(); });
  REQUIRE(broker.wait_for("acquire"));
  broker.close(0);
  REQUIRE(waiting.wait_for(5s) == std::future_status::ready);
  CHECK_THROWS_AS(waiting.get(), BrokerError);
  CHECK_FALSE(client.connected());
  CHECK_THROWS_AS(client.acquire(), BrokerError);
  CHECK_THROWS_AS(client.report_residency(1), BrokerError);
}

TEST_CASE("a lost connection is reported to the on_lost handler; closing it ourselves is not", "[client]") {
  FakeBroker broker;
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::string> reasons;
  {
    BrokerClient client(options_for(broker));
    client.on_lost([&](const std::string& reason) {
      std::lock_guard lock(m);
      reasons.push_back(reason);
      cv.notify_all();
    });
    broker.close(0);
    std::unique_lock lock(m);
    REQUIRE(cv.wait_for(lock, 5s, [&] { return !reasons.empty(); }));
    CHECK(reasons[0].find("closed the connection") != std::string::npos);
  }
  {
    BrokerClient client(options_for(broker));
    client.on_lost([&](const std::string& reason) {
      std::lock_guard lock(m);
      reasons.push_back("second: " + reason);
    });
  }  // destroyed: the connection closes from this side
  std::lock_guard lock(m);
  CHECK(reasons.size() == 1);
}

TEST_CASE("revoke runs the handler on the I/O thread while the user thread waits", "[client]") {
  FakeBroker broker;
  grant_on_acquire(broker);
  BrokerClient client(options_for(broker));
  std::mutex m;
  std::condition_variable cv;
  std::optional<acb::client::Revoke> seen;
  std::thread::id handler_thread;
  client.on_revoke([&](const acb::client::Revoke& r) {
    std::lock_guard lock(m);
    seen = r;
    handler_thread = std::this_thread::get_id();
    cv.notify_all();
  });
  const auto g = client.acquire();
  broker.send(0, {{"op", "revoke"}, {"device", 0}, {"lease", g.lease}, {"deadline_ms", 200}, {"reason", "preempt"}});
  {
    std::unique_lock lock(m);
    REQUIRE(cv.wait_for(lock, 5s, [&] { return seen.has_value(); }));
  }
  CHECK(seen->reason == "preempt");
  CHECK(seen->deadline_ms == std::optional<std::uint64_t>(200));
  CHECK(seen->lease == g.lease);
  CHECK(handler_thread != std::this_thread::get_id());
  // A share revoke carries no deadline.
  {
    std::lock_guard lock(m);
    seen.reset();
  }
  broker.send(0, {{"op", "revoke"}, {"device", 0}, {"lease", g.lease}, {"reason", "share"}});
  {
    std::unique_lock lock(m);
    REQUIRE(cv.wait_for(lock, 5s, [&] { return seen.has_value(); }));
  }
  CHECK(seen->reason == "share");
  CHECK_FALSE(seen->deadline_ms.has_value());
  client.release(0);
  CHECK(broker.wait_for("release"));
}

TEST_CASE("evict handler can report residency from the I/O thread", "[client]") {
  FakeBroker broker;
  BrokerClient client(options_for(broker));
  client.on_evict([&](const acb::client::Evict& e) { client.report_residency(1000 - e.bytes); });
  broker.send(0, {{"op", "evict"}, {"device", 0}, {"bytes", 600}});
  const auto residency = broker.wait_for("residency");
  REQUIRE(residency);
  CHECK((*residency)["resident_bytes"] == 400);
}

TEST_CASE("a throwing handler does not stop the I/O thread", "[client]") {
  FakeBroker broker;
  grant_on_acquire(broker);
  BrokerClient client(options_for(broker));
  client.on_evict([](const acb::client::Evict&) { throw std::runtime_error("handler failed on purpose"); });
  broker.send(0, {{"op", "evict"}, {"device", 0}, {"bytes", 1}});
  CHECK(client.acquire(std::nullopt, 5000ms).lease == 1);  // the grant after it still arrives
  CHECK(client.connected());
}

TEST_CASE("requests are matched to replies by seq, even out of order", "[client]") {
  FakeBroker broker;
  std::mutex m;
  std::vector<std::uint64_t> seqs;
  broker.set_handler([&](FakeBroker& b, int conn, const nlohmann::json& msg) {
    if (msg["op"] != "status") return;
    std::lock_guard lock(m);
    seqs.push_back(msg["seq"].get<std::uint64_t>());
    if (seqs.size() == 2) {  // answer the second first
      b.send(conn, {{"op", "status"}, {"seq", seqs[1]}, {"tag", "second"}});
      b.send(conn, {{"op", "status"}, {"seq", seqs[0]}, {"tag", "first"}});
    }
  });
  BrokerClient client(options_for(broker));
  auto first = std::async(std::launch::async, [&] { return client.request({{"op", "status"}}); });
  REQUIRE(broker.wait_count("status", 1));
  auto second = std::async(std::launch::async, [&] { return client.request({{"op", "status"}}); });
  const auto a = first.get();
  const auto b = second.get();
  CHECK(a["tag"] == "first");
  CHECK(b["tag"] == "second");
  CHECK(a["seq"] != b["seq"]);
}

TEST_CASE("an error reply is a BrokerError with the reason; no reply times out", "[client]") {
  FakeBroker broker;
  broker.set_handler([](FakeBroker& b, int conn, const nlohmann::json& m) {
    if (m["op"] == "drain_device") b.send(conn, {{"op", "error"}, {"seq", m["seq"]}, {"reason", "admin only"}});
  });
  BrokerClient client(options_for(broker));
  CHECK_THROWS_WITH(client.request({{"op", "drain_device"}, {"device", 0}}), acb_test::has_substring("admin only"));
  CHECK_THROWS_WITH(client.request({{"op", "trace"}}, 50ms), acb_test::has_substring("no reply within 50 ms"));
  CHECK_THROWS_AS(client.request(nlohmann::json::array({1, 2})), BrokerError);
  CHECK(client.connected());
}

TEST_CASE("the I/O thread heartbeats at the welcome's interval", "[client]") {
  FakeBroker broker({.token = "test-token", .heartbeat_interval_ms = 20, .capacity_bytes = 1 << 20});
  BrokerClient client(options_for(broker));
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(broker.wait_count("heartbeat", 3, 5s));
  // Three intervals must have passed: heartbeats are paced, not a flood.
  CHECK(std::chrono::steady_clock::now() - start >= 40ms);
}

TEST_CASE("a malformed frame from the broker drops the connection and fails requests", "[client]") {
  FakeBroker broker;
  BrokerClient client(options_for(broker));
  auto pending = std::async(std::launch::async, [&] { return client.request({{"op", "status"}}, 5000ms); });
  REQUIRE(broker.wait_for("status"));
  broker.send_raw(0, std::string("\xff\xff\xff\xff", 4));  // length above the 1 MiB maximum
  REQUIRE(pending.wait_for(5s) == std::future_status::ready);
  CHECK_THROWS_WITH(pending.get(), acb_test::has_substring("protocol error"));
  CHECK_FALSE(client.connected());
}

TEST_CASE("many clients acquire and release in turn without losing a grant", "[client][stress]") {
  // The fake grants one holder at a time, FIFO, like the arbiter's simplest case.
  struct Queue {
    std::mutex m;
    int holder = -1;
    std::deque<int> waiting;
    std::uint64_t lease = 0;
  };
  auto q = std::make_shared<Queue>();
  FakeBroker broker;
  broker.set_handler([q](FakeBroker& b, int conn, const nlohmann::json& m) {
    std::lock_guard lock(q->m);
    if (m["op"] == "acquire") {
      if (q->holder < 0) {
        q->holder = conn;
        b.send(conn, {{"op", "grant"}, {"device", 0}, {"lease", ++q->lease}});
      } else {
        q->waiting.push_back(conn);
      }
    } else if (m["op"] == "release" && q->holder == conn) {
      q->holder = -1;
      if (!q->waiting.empty()) {
        q->holder = q->waiting.front();
        q->waiting.pop_front();
        b.send(q->holder, {{"op", "grant"}, {"device", 0}, {"lease", ++q->lease}});
      }
    }
  });
  constexpr int kClients = 4;
  constexpr int kRounds = 50;
  std::atomic<int> inside{0};
  std::atomic<bool> overlap{false};
  std::vector<std::unique_ptr<BrokerClient>> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(std::make_unique<BrokerClient>(options_for(broker)));
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      for (int r = 0; r < kRounds; ++r) {
        clients[static_cast<std::size_t>(i)]->acquire(std::nullopt, 10000ms);
        if (inside.fetch_add(1) != 0) overlap = true;
        inside.fetch_sub(1);
        clients[static_cast<std::size_t>(i)]->release();
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK_FALSE(overlap.load());
  std::lock_guard lock(q->m);
  CHECK(q->lease == kClients * kRounds);
}

TEST_CASE("acquire and request from a callback fail instead of deadlocking", "[client]") {
  FakeBroker broker;
  BrokerClient client(options_for(broker));
  std::promise<std::string> outcome;
  client.on_evict([&](const acb::client::Evict&) {
    std::string what;
    try {
      client.request({{"op", "status"}}, 200ms);
    } catch (const BrokerError& e) {
      what += e.what();
    }
    try {
      client.acquire(std::nullopt, 200ms);
    } catch (const BrokerError& e) {
      what += e.what();
    }
    outcome.set_value(what);
  });
  broker.send(0, {{"op", "evict"}, {"device", 0}, {"bytes", 1}});
  auto f = outcome.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  const auto what = f.get();
  CHECK(holds_message(what, "request() was called from a revoke/evict callback"));
  CHECK(holds_message(what, "acquire() was called from a revoke/evict callback"));
  CHECK(client.connected());
}

TEST_CASE("a growth request while holding: re-grant, or the lease stays held on reject/timeout", "[client]") {
  FakeBroker broker;
  std::atomic<int> acquires{0};
  broker.set_handler([&](FakeBroker& b, int conn, const nlohmann::json& m) {
    if (m["op"] != "acquire") return;
    const int n = ++acquires;
    if (n == 1) b.send(conn, {{"op", "grant"}, {"device", 0}, {"lease", 1}});
    if (n == 2) b.send(conn, {{"op", "grant"}, {"device", 0}, {"lease", 2}});  // the re-grant
    if (n == 3) b.send(conn, {{"op", "reject"}, {"reason", "need above capacity"}});
    // n == 4: never answered
  });
  BrokerClient client(options_for(broker));
  CHECK(client.acquire(1000, 5000ms).lease == 1);
  CHECK_THROWS_AS(client.acquire(std::nullopt, 5000ms), BrokerError);  // a plain second acquire is refused locally
  CHECK(client.acquire(2000, 5000ms).lease == 2);
  CHECK_THROWS_AS(client.acquire(1ull << 50, 5000ms), LeaseRejected);
  CHECK_THROWS_AS(client.acquire(std::nullopt, 5000ms), BrokerError);  // still holding after the rejected growth
  CHECK_THROWS_WITH(client.acquire(3000, 30ms), acb_test::has_substring("no grant within"));
  CHECK_THROWS_AS(client.acquire(std::nullopt, 5000ms), BrokerError);  // still holding after the timed-out growth
  client.release();
  REQUIRE(broker.wait_count("release", 1));
  CHECK_FALSE(broker.wait_count("release", 2, 50ms));  // the timeout did not release the held lease
}
