// BrokerClient: wires the socket, the handshake, the lease state, the
// pending requests and the I/O thread together (see broker_client.h).
#include "client/broker_client.h"

#include <atomic>
#include <cstdio>
#include <mutex>

#include "client/handshake.h"
#include "client/io_loop.h"
#include "client/lease_state.h"
#include "client/messages.h"
#include "client/pending_requests.h"
#include "client/socket.h"
#include "common/frame.h"

namespace acb::client {
namespace {

bool is_reply(const std::string& op) { return op == "ok" || op == "status" || op == "trace" || op == "error"; }

}  // namespace

struct BrokerClient::Impl {
  ClientOptions options;
  Socket socket;
  Welcome welcome;
  LeaseState lease;
  PendingRequests pending;
  std::atomic<bool> connected{false};
  std::mutex handlers_mutex;
  std::function<void(const Revoke&)> revoke_handler;
  std::function<void(const Evict&)> evict_handler;
  std::function<void(const std::string&)> lost_handler;
  std::atomic<bool> closing{false};
  std::unique_ptr<IoLoop> io;  // last: stopped first, before the state it feeds

  explicit Impl(ClientOptions opts)
      : options(std::move(opts)), socket(options.host, options.port, options.connect_timeout) {
    wire::FrameParser parser;
    welcome = handshake(socket, options, parser);
    connected.store(true);
    io = std::make_unique<IoLoop>(socket, std::move(parser), std::chrono::milliseconds(welcome.heartbeat_interval_ms),
                                  IoLoop::Sink{[this](nlohmann::json& m) { dispatch(m); },
                                               [this](const std::string& reason) { lose(reason); }});
  }

  ~Impl() {
    closing.store(true);  // the loss that closing causes is not reported
    io.reset();
  }

  // acquire() and request() wait for a frame that only the I/O thread reads.
  void refuse_on_io_thread(const char* call) const {
    if (io->on_io_thread()) {
      throw BrokerError(std::string(call) + " was called from a revoke/evict callback, on the I/O thread that "
                        "would deliver its answer; call it from another thread");
    }
  }

  void send(const nlohmann::json& message) {
    if (!connected.load()) throw BrokerError(message.value("op", std::string("send")) + ": " + lease.lost_reason());
    io->send(message);
  }

  // On the I/O thread.
  void dispatch(nlohmann::json& message) {
    const std::string op = message.value("op", std::string());
    const auto seq = message.find("seq");
    if (is_reply(op) && seq != message.end() && seq->is_number_unsigned()) {
      const auto seq_number = seq->get<std::uint64_t>();  // read before the message is moved away
      pending.complete(seq_number, std::move(message));
      return;
    }
    if (op == "grant") {
      lease.on_grant(messages::parse_grant(message));  // a stale grant (withdrawn request) is dropped
    } else if (op == "reject") {
      lease.on_reject(message.value("reason", std::string("no reason given")));
    } else if (op == "revoke") {
      const Revoke revoke = messages::parse_revoke(message);
      lease.on_revoke(revoke);
      call(revoke_handler, revoke, "revoke");
    } else if (op == "evict") {
      call(evict_handler, messages::parse_evict(message), "evict");
    } else if (op == "error") {
      throw BrokerError("the acb broker closed the connection: " + message.value("reason", std::string("no reason")));
    }
    // Anything else is a newer broker's op this client does not know: ignored.
  }

  // A throwing callback must not kill the I/O thread (heartbeats would stop
  // and the broker would reclaim the lease), so it is reported and dropped.
  template <typename Event>
  void call(std::function<void(const Event&)>& slot, const Event& event, const char* what) {
    std::function<void(const Event&)> handler;
    {
      std::lock_guard lock(handlers_mutex);
      handler = slot;
    }
    if (!handler) return;
    try {
      handler(event);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "acb: the %s handler threw: %s\n", what, e.what());
    }
  }

  void lose(const std::string& reason) {
    connected.store(false);
    lease.on_lost(reason);
    pending.fail_all(reason);
    if (!closing.load()) call(lost_handler, reason, "connection-lost");
  }
};

BrokerClient::BrokerClient(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

BrokerClient::~BrokerClient() = default;

const Welcome& BrokerClient::welcome() const { return impl_->welcome; }

Grant BrokerClient::acquire(std::optional<std::uint64_t> need_bytes, std::optional<std::chrono::milliseconds> timeout) {
  impl_->refuse_on_io_thread("acquire()");
  impl_->lease.begin_acquire(need_bytes.has_value());
  try {
    impl_->send(messages::acquire(need_bytes));
  } catch (...) {
    impl_->lease.on_release();
    throw;
  }
  try {
    return impl_->lease.wait(timeout);
  } catch (const BrokerError&) {
    // Timed out: withdraw the request so the broker does not grant a lease
    // nobody waits for. A grant already in flight is released by the same frame.
    // A timed-out growth request keeps the lease it already holds.
    if (impl_->connected.load() && !impl_->lease.holds()) {
      try {
        impl_->io->send(messages::release(std::nullopt));
      } catch (const BrokerError&) {
      }
    }
    throw;
  }
}

void BrokerClient::release(std::optional<std::uint64_t> resident_bytes, bool pinned) {
  impl_->send(messages::release(resident_bytes, pinned));
  impl_->lease.on_release();
}

void BrokerClient::report_residency(std::uint64_t resident_bytes, bool pinned) {
  impl_->send(messages::residency(resident_bytes, pinned));
}

void BrokerClient::on_revoke(std::function<void(const Revoke&)> handler) {
  std::lock_guard lock(impl_->handlers_mutex);
  impl_->revoke_handler = std::move(handler);
}

void BrokerClient::on_evict(std::function<void(const Evict&)> handler) {
  std::lock_guard lock(impl_->handlers_mutex);
  impl_->evict_handler = std::move(handler);
}

void BrokerClient::on_lost(std::function<void(const std::string&)> handler) {
  std::lock_guard lock(impl_->handlers_mutex);
  impl_->lost_handler = std::move(handler);
}

nlohmann::json BrokerClient::request(nlohmann::json message, std::chrono::milliseconds timeout) {
  if (!message.is_object() || !message.contains("op") || !message["op"].is_string()) {
    throw BrokerError("request: the message must be a JSON object with a string \"op\", got " + message.dump());
  }
  impl_->refuse_on_io_thread("request()");
  const std::uint64_t seq = impl_->pending.open();
  message["seq"] = seq;
  try {
    impl_->send(message);
  } catch (...) {
    impl_->pending.abandon(seq);
    throw;
  }
  return impl_->pending.wait(seq, timeout);
}

bool BrokerClient::connected() const { return impl_->connected.load(); }

bool BrokerClient::holds() const { return impl_->lease.holds(); }

}  // namespace acb::client
