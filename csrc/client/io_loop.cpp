#include "client/io_loop.h"

#include <exception>

#include "client/broker_client.h"

namespace acb::client {
namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

IoLoop::IoLoop(Socket& socket, wire::FrameParser parser, std::chrono::milliseconds heartbeat_interval, Sink sink)
    : socket_(socket),
      parser_(std::move(parser)),
      heartbeat_interval_(heartbeat_interval),
      sink_(std::move(sink)),
      last_send_ns_(now_ns()) {
  thread_ = std::thread([this] { run(); });
}

IoLoop::~IoLoop() { stop(); }

void IoLoop::stop() {
  stopping_.store(true);
  socket_.shutdown();
  if (thread_.joinable()) thread_.join();
}

void IoLoop::send(const nlohmann::json& message) {
  socket_.send_all(wire::encode_message(message));
  last_send_ns_.store(now_ns(), std::memory_order_relaxed);
}

void IoLoop::read_available() {
  char buffer[64 * 1024];
  const std::size_t n = socket_.recv_some(buffer, sizeof buffer);
  if (n == 0) throw BrokerError("the acb broker at " + socket_.peer() + " closed the connection");
  parser_.feed(buffer, n);
  std::string payload;
  for (;;) {
    const auto result = parser_.next(payload);
    if (result == wire::FrameParser::Result::incomplete) return;
    if (result == wire::FrameParser::Result::bad) {
      throw BrokerError("protocol error from the acb broker at " + socket_.peer() + ": " + parser_.error());
    }
    std::string error;
    auto message = wire::parse_message(payload, error);
    if (!message) throw BrokerError("protocol error from the acb broker at " + socket_.peer() + ": " + error);
    sink_.on_message(*message);
  }
}

void IoLoop::run() {
  std::string reason;
  try {
    // Bytes that came with the welcome are dispatched before the first poll.
    std::string payload;
    while (parser_.next(payload) == wire::FrameParser::Result::good) {
      std::string error;
      auto message = wire::parse_message(payload, error);
      if (!message) throw BrokerError("protocol error from the acb broker at " + socket_.peer() + ": " + error);
      sink_.on_message(*message);
    }
    const auto interval_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(heartbeat_interval_).count();
    while (!stopping_.load()) {
      auto wait = std::chrono::milliseconds(-1);  // poll forever without heartbeats
      if (interval_ns > 0) {
        const std::int64_t due_ns = last_send_ns_.load(std::memory_order_relaxed) + interval_ns - now_ns();
        if (due_ns <= 0) {
          send(nlohmann::json{{"op", "heartbeat"}});
          continue;
        }
        wait = std::chrono::milliseconds(due_ns / 1000000 + 1);
      }
      if (socket_.wait_readable(wait)) read_available();
    }
    reason = "the connection to the acb broker at " + socket_.peer() + " was closed by this client";
  } catch (const std::exception& e) {
    reason = stopping_.load() ? "the connection to the acb broker at " + socket_.peer() + " was closed by this client"
                              : std::string(e.what());
  }
  sink_.on_lost(reason);
}

}  // namespace acb::client
