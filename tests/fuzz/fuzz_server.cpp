// Fuzzes the whole server path of one connection: bytes from a peer go
// through a Session (framing, the pre-authentication limit, backpressure)
// into the Server (validation, hello and its tokens, requests, the arbiter,
// the error paths and their encoding) and back out as frames.
//
// One Server on one io_context lives for the whole run, as in acb-broker:
// state that the inputs leave behind (clients, devices, quanta) is part of
// what is fuzzed. Each input is one connection: one end of a socketpair is
// adopted by the server, the input is written to the other end in chunks
// (the first byte picks 8 to 2048 bytes per write), the io_context runs until
// it is idle, and everything the server sent is checked. The tokens are
// "ab"*32 (client) and "cd"*32 (admin); the handshake is compiled with a
// fixed broker nonce (ACB_FUZZING_FIXED_NONCE, all zeros), so the seeds'
// "auth" frames carry client proofs that verify and the inputs reach what
// lies behind the handshake.
//
// Invariants checked: no crash, sanitizer report or exception out of the
// event loop; every frame the server sends is at most kMaxFrameBytes, valid
// JSON (nlohmann's parser rejects invalid UTF-8) and an object with a string
// "op"; once an "error" without "seq" is sent, nothing follows it; no frame
// ever reaches the server's internal-error boundary (acb_internal_errors_total
// stays 0).
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "broker_server/server.h"
#include "common/frame.h"

namespace {

namespace asio = boost::asio;

struct Harness {
  asio::io_context io{1};
  acb::broker::Server server{io, config(), acb::broker::CommandLine{},
                             acb::broker::Tokens{token("ab"), token("cd")}};

  static std::string token(const char* pair) {
    std::string t;
    for (int i = 0; i < 32; ++i) t += pair;
    return t;
  }
  static acb::broker::BrokerConfig config() {
    acb::broker::BrokerConfig c;
    c.host = "127.0.0.1";
    c.port = 0;
    c.metrics_port = 0;
    c.devices = {acb::broker::DeviceSpec{"0", 1ull << 30}, acb::broker::DeviceSpec{"1", 0}};
    // A short lease history: "trace" would otherwise encode thousands of slices
    // once the inputs have made that many leases, and dominate the run time.
    c.arbiter.timeline_capacity = 64;
    return c;
  }
  Harness() { server.start(); }

  // Runs handlers until none is ready (timers far in the future are left).
  void settle() {
    for (int i = 0; i < 100000 && io.poll() > 0; ++i) {
    }
  }
};

Harness& harness() {
  static Harness* h = new Harness();  // never destroyed: the fuzzer exits without teardown
  return *h;
}

void check_output(const std::string& bytes) {
  acb::wire::FrameParser parser;
  parser.feed(bytes.data(), bytes.size());
  std::string payload;
  bool closed_by_error = false;
  for (;;) {
    const auto result = parser.next(payload);
    if (result == acb::wire::FrameParser::Result::incomplete) break;
    if (result == acb::wire::FrameParser::Result::bad) std::abort();  // the server sent an oversized frame
    if (closed_by_error) std::abort();                                // a frame after the closing error
    const auto message = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
    if (message.is_discarded() || !message.is_object()) std::abort();
    const auto op = message.find("op");
    if (op == message.end() || !op->is_string()) std::abort();
    if (*op == "error" && !message.contains("seq")) closed_by_error = true;
  }
  // A partial frame at the end is allowed: a session closed for its backlog
  // (Session::kMaxQueuedBytes) drops its queue wherever the write stood.
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  Harness& h = harness();
  // 8 to 2048 bytes per write: byte-by-byte splits are the frame parser
  // fuzzer's job; here each write costs a round of the event loop.
  const std::size_t chunk = (std::size_t{data[0]} + 1) * 8;
  ++data;
  --size;

  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  asio::ip::tcp::socket adopted(h.io);
  adopted.assign(asio::ip::tcp::v4(), fds[0]);
  h.server.adopt(std::move(adopted));
  const int peer = fds[1];

  std::string received;
  auto drain = [&] {
    char buf[65536];
    for (;;) {
      const ssize_t n = ::recv(peer, buf, sizeof buf, 0);
      if (n <= 0) return;
      received.append(buf, static_cast<std::size_t>(n));
    }
  };
  for (std::size_t offset = 0; offset < size; offset += chunk) {
    const std::size_t n = std::min(chunk, size - offset);
    if (::send(peer, data + offset, n, MSG_NOSIGNAL) < 0) break;  // the server closed its end
    h.settle();
    drain();
  }
  h.settle();
  drain();
  ::close(peer);  // the server sees EOF, closes the session and tells the arbiter
  h.settle();
  check_output(received);
  // The server's boundaries keep a throwing handler from ending the process;
  // here any use of them is a finding.
  if (h.server.metrics().internal_errors_total != 0) std::abort();
  return 0;
}
