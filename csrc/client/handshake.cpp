#include "client/handshake.h"

#include <unistd.h>

#include <chrono>
#include <string>

#include "client/messages.h"
#include "common/token.h"

namespace acb::client {
namespace {

std::string resolve_token(const ClientOptions& options) {
  if (!options.token.empty()) return options.token;
  try {
    return auth::read_token(options.admin ? auth::TokenKind::admin : auth::TokenKind::client);
  } catch (const auth::TokenError& e) {
    throw BrokerError(std::string("cannot authenticate to the acb broker: ") + e.what());
  }
}

}  // namespace

Welcome handshake(Socket& socket, const ClientOptions& options, wire::FrameParser& parser) {
  socket.send_all(wire::encode_message(messages::hello(options, resolve_token(options), ::getpid())));
  const auto deadline = std::chrono::steady_clock::now() + options.connect_timeout;
  std::string payload;
  char buffer[4096];
  for (;;) {
    const auto result = parser.next(payload);
    if (result == wire::FrameParser::Result::bad) {
      throw BrokerError("protocol error from the acb broker at " + socket.peer() + ": " + parser.error());
    }
    if (result == wire::FrameParser::Result::good) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !socket.wait_readable(left)) {
      throw BrokerError("the acb broker at " + socket.peer() + " did not answer hello within " +
                        std::to_string(options.connect_timeout.count()) + " ms");
    }
    const std::size_t n = socket.recv_some(buffer, sizeof buffer);
    if (n == 0) throw BrokerError("the acb broker at " + socket.peer() + " closed the connection during hello");
    parser.feed(buffer, n);
  }
  std::string error;
  const auto message = wire::parse_message(payload, error);
  if (!message) throw BrokerError("protocol error from the acb broker at " + socket.peer() + ": " + error);
  return messages::parse_welcome(*message);
}

}  // namespace acb::client
