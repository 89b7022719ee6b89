#include "client/handshake.h"

#include <unistd.h>

#include <chrono>
#include <string>

#include "client/messages.h"
#include "common/handshake.h"
#include "common/token.h"

namespace acb::client {
namespace {

using Clock = std::chrono::steady_clock;

std::string resolve_token(const ClientOptions& options) {
  if (!options.token.empty()) return options.token;
  try {
    return auth::read_token(options.admin ? auth::TokenKind::admin : auth::TokenKind::client);
  } catch (const auth::TokenError& e) {
    throw BrokerError(std::string("cannot authenticate to the acb broker: ") + e.what());
  }
}

// The next message from the peer, or BrokerError once `deadline` passes.
nlohmann::json read_message(Socket& socket, wire::FrameParser& parser, Clock::time_point deadline,
                            const ClientOptions& options, const char* waiting_for) {
  std::string payload;
  char buffer[4096];
  for (;;) {
    const auto result = parser.next(payload);
    if (result == wire::FrameParser::Result::bad) {
      throw BrokerError("protocol error from the acb broker at " + socket.peer() + ": " + parser.error());
    }
    if (result == wire::FrameParser::Result::good) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || !socket.wait_readable(left)) {
      throw BrokerError("the acb broker at " + socket.peer() + " did not send " + waiting_for + " within " +
                        std::to_string(options.connect_timeout.count()) + " ms");
    }
    const std::size_t n = socket.recv_some(buffer, sizeof buffer);
    if (n == 0) throw BrokerError("the acb broker at " + socket.peer() + " closed the connection during hello");
    parser.feed(buffer, n);
  }
  std::string error;
  auto message = wire::parse_message(payload, error);
  if (!message) throw BrokerError("protocol error from the acb broker at " + socket.peer() + ": " + error);
  return std::move(*message);
}

}  // namespace

Welcome handshake(Socket& socket, const ClientOptions& options, wire::FrameParser& parser) {
  const std::string token = resolve_token(options);
  const auth::Role role = options.admin ? auth::Role::admin : auth::Role::client;
  auth::Nonce client_nonce{};
  try {
    client_nonce = auth::fresh_nonce();
  } catch (const auth::HandshakeError& e) {
    throw BrokerError(std::string("cannot authenticate to the acb broker: ") + e.what());
  }
  const auto deadline = Clock::now() + options.connect_timeout;

  socket.send_all(wire::encode_message(messages::hello(options, client_nonce, ::getpid())));
  const messages::Challenge challenge =
      messages::parse_challenge(read_message(socket, parser, deadline, options, "its challenge"));
  if (!auth::proofs_equal(challenge.broker_proof,
                          auth::broker_proof(token, role, client_nonce, challenge.broker_nonce))) {
    throw BrokerError("the process at " + socket.peer() + " is not the acb broker: it could not prove it holds the " +
                      auth::role_name(role) +
                      " token, so nothing derived from the token was sent to it; another program may hold the "
                      "broker's port while the broker is down, or the broker uses other tokens than this process "
                      "(ACB_TOKEN_DIR, ACB_TOKEN, ACB_ADMIN_TOKEN)");
  }
  socket.send_all(wire::encode_message(
      messages::auth(auth::client_proof(token, role, challenge.broker_nonce, client_nonce))));
  return messages::parse_welcome(read_message(socket, parser, deadline, options, "its welcome"));
}

}  // namespace acb::client
