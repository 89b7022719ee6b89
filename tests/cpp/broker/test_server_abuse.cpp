// A real Server against hostile peers: input that once ended the process,
// frames before authentication, pipelining, and what a peer that does not
// read may cost. Each case checks that the broker stays up and that an
// honest client keeps its lease.
#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "acb_catch.hpp"
#include "server_test_support.h"

using namespace acb::broker;
using namespace acb::broker::test;
using nlohmann::json;

namespace {

std::string e_acute_op() {
  std::string op = "a";
  for (int i = 0; i < 40; ++i) op += "\xc3\xa9";  // "é": the 64-byte cut once fell inside one
  return op;
}

// The bystander still holds its lease and is answered.
void check_holder(TestClient& bystander, const json& welcome) {
  bystander.send({{"op", "status"}, {"seq", 7}});
  const auto status = bystander.expect("status");
  CHECK(status["devices"][0]["holder"] == welcome["client_id"]);
}

}  // namespace

TEST_CASE("a multi-byte unknown op closes only its connection, before and after hello") {
  RunningServer server;
  TestClient bystander(server.port());
  const auto welcome = bystander.hello("bystander");
  bystander.send({{"op", "acquire"}});
  bystander.expect("grant");

  SECTION("before hello") {
    TestClient bad(server.port());
    bad.send({{"op", e_acute_op()}});
    const std::string reason = bad.expect_error_then_close();
    CHECK(reason.find("unknown op \"a\xc3\xa9") != std::string::npos);
  }
  SECTION("after hello") {
    TestClient bad(server.port());
    bad.hello("bad");
    bad.send({{"op", e_acute_op()}});
    CHECK(bad.expect_error_then_close().find("unknown op") != std::string::npos);
  }
  SECTION("invalid UTF-8 in a hello name and an op") {
    TestClient bad(server.port());
    bad.send_raw(acb::wire::encode_frame(R"({"op":"hello","versions":[1],"token":"x","name":")"
                                         "\xff\xc3\n"
                                         R"("})"));
    bad.expect_error_then_close();
    TestClient worse(server.port());
    worse.send_raw(acb::wire::encode_frame("{\"op\":\"\xc3\"}"));
    worse.expect_error_then_close();
  }
  check_holder(bystander, welcome);
}

TEST_CASE("frames are limited to kMaxUnauthenticatedFrameBytes until the handshake is complete") {
  RunningServer server;
  const std::string padding(acb::wire::kMaxUnauthenticatedFrameBytes, 'x');  // frame a little above the limit
  {
    TestClient early(server.port());
    // The length alone is refused: the broker never buffers the payload.
    early.send_raw(acb::wire::encode_frame(json({{"op", "hello"}, {"pad", padding}}).dump()).substr(0, 4));
    const std::string reason = early.expect_error_then_close();
    CHECK(reason.find("exceeds the maximum of " + std::to_string(acb::wire::kMaxUnauthenticatedFrameBytes)) !=
          std::string::npos);
    CHECK(reason.find("handshake") != std::string::npos);
  }
  TestClient client(server.port());
  client.hello("big");
  client.send({{"op", "status"}, {"seq", 1}, {"pad", padding}});
  CHECK(client.expect("status")["seq"] == 1);
}

TEST_CASE("a peer that keeps sending after its error is cut off, not drained for the linger time") {
  RunningServer server;
  TestClient bystander(server.port());
  const auto welcome = bystander.hello("bystander");
  bystander.send({{"op", "acquire"}});
  bystander.expect("grant");
  const int fd = connect_loopback(server.port());
  // A length above kMaxUnauthenticatedFrameBytes earns an error, then the
  // peer goes on sending. Draining it for Session::kLingerMs would take all
  // of kBytes; cut off after kMaxLingerDiscardBytes, its sends fail once the
  // kernel buffers between the two are full.
  const std::string header = acb::wire::encode_frame(std::string(acb::wire::kMaxUnauthenticatedFrameBytes + 1, 'x')).substr(0, 4);
  REQUIRE(::send(fd, header.data(), header.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(header.size()));
  constexpr std::size_t kBytes = 64u << 20;
  const std::string chunk(64u << 10, 'x');
  std::size_t sent = 0;
  int error = 0;
  while (sent < kBytes) {
    const ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n < 0) {
      error = errno;
      break;
    }
    sent += static_cast<std::size_t>(n);
  }
  ::close(fd);
  CHECK(sent < kBytes);
  CHECK((error == ECONNRESET || error == EPIPE));
  check_holder(bystander, welcome);
}

TEST_CASE("connections beyond max_connections_per_uid are refused with an error, and counted") {
  auto config = RunningServer::make_config();
  config.connections.max_connections_per_uid = 2;
  RunningServer server(config);
  TestClient first(server.port());
  first.hello("first");
  TestClient second(server.port());  // unauthenticated ones count too
  {
    TestClient third(server.port());
    const std::string reason = third.expect_error_then_close();
    CHECK(reason.find("too many connections from ") == 0);  // "uid N", or "peers of unknown uid" without sock_diag
    CHECK(reason.find("(limit 2)") != std::string::npos);
  }
  first.send({{"op", "status"}, {"seq", 1}});
  CHECK(first.expect("status")["seq"] == 1);  // the admitted ones are served
}

TEST_CASE("pipelined requests are all answered, in order, and the client is never closed") {
  RunningServer server;
  // 160 clients with names near the 256-byte limit make each status reply
  // about 64 KB, so that the replies to one burst of requests are well above
  // Session::kMaxQueuedBytes.
  std::vector<std::unique_ptr<TestClient>> others;
  for (int i = 0; i < 160; ++i) {
    others.push_back(std::make_unique<TestClient>(server.port()));
    others.back()->hello(std::string(250, 'n') + std::to_string(i));
  }
  TestClient client(server.port());
  client.hello("pipeliner");
  constexpr int kRequests = 160;
  std::string burst;  // about 6 KB: fits in the socket buffers, so the send never blocks
  for (int seq = 1; seq <= kRequests; ++seq) burst += acb::wire::encode_message({{"op", "status"}, {"seq", seq}});
  client.send_raw(burst);
  std::size_t reply_bytes = 0;
  for (int seq = 1; seq <= kRequests; ++seq) {
    const auto reply = client.recv();
    REQUIRE(reply);  // nullopt: the broker closed the connection
    REQUIRE((*reply)["op"] == "status");
    REQUIRE((*reply)["seq"] == seq);
    reply_bytes += reply->dump().size();
  }
  CHECK(reply_bytes > Session::kMaxQueuedBytes);
  client.send({{"op", "status"}, {"seq", kRequests + 1}});
  CHECK(client.expect("status")["seq"] == kRequests + 1);
}

TEST_CASE("past max_queued_output_mib the connections that read least are closed, and the others are served") {
  auto config = RunningServer::make_config();
  config.max_queued_output_mib = 1;
  RunningServer server(config);
  TestClient holder(server.port());
  const json welcome = holder.hello("holder");
  holder.send({{"op", "acquire"}});
  holder.expect("grant");
  // 40 clients with names near the limit make each status reply about 16 KB.
  std::vector<std::unique_ptr<TestClient>> others;
  for (int i = 0; i < 40; ++i) {
    others.push_back(std::make_unique<TestClient>(server.port()));
    others.back()->hello(std::string(250, 'n') + std::to_string(i));
  }
  // Peers that ask and never read: each may queue up to Session::kReadPauseBytes
  // (and one reply more) before the broker stops reading it, so together they
  // pass 1 MiB while each stays far below Session::kMaxQueuedBytes. Each asks
  // for about 10 MB of replies, more than the kernel's socket buffers can
  // take off the broker's queue (up to tcp_wmem's 4 MiB on the broker's side).
  constexpr int kMute = 12;
  constexpr int kRequests = 640;
  std::vector<std::unique_ptr<TestClient>> mute;
  std::string burst;
  for (int seq = 1; seq <= kRequests; ++seq) burst += acb::wire::encode_message({{"op", "status"}, {"seq", seq}});
  for (int i = 0; i < kMute; ++i) {
    mute.push_back(std::make_unique<TestClient>(server.port(), 4096));
    mute.back()->hello("mute" + std::to_string(i));
    mute.back()->send_raw(burst);
  }
  // The bound is crossed while the broker answers the bursts: wait for the
  // counter (bounded), then for the holder to be served after it.
  const auto closes = [&] {
    const std::string text = http_get(server.metrics_port(), "/metrics");
    const std::string key = "\nacb_output_bound_closes_total ";
    const auto at = text.find(key);
    REQUIRE(at != std::string::npos);
    return std::stoull(text.substr(at + key.size()));
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
  while (closes() == 0) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::yield();
  }
  CHECK(closes() < static_cast<std::uint64_t>(kMute));  // only as many as it takes to get under the bound
  check_holder(holder, welcome);
  // Connections closed by the bound end after what was queued to them; a mute
  // peer that is still open is still answered once it reads.
  int closed = 0;
  for (auto& m : mute) {
    for (;;) {
      const auto reply = m->recv();
      if (!reply) {
        ++closed;
        break;
      }
      if ((*reply)["seq"] == kRequests) break;
    }
  }
  CHECK(closed > 0);
  CHECK(closed < kMute);
}
