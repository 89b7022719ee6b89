// Handshake: the broker's side of mutual authentication on one connection
// (protocol version 2, docs/protocol.md "Authentication and roles").
//
// Built from a valid hello and the token of the role it names, it draws the
// broker's nonce and computes both proofs at once: challenge() is the frame
// that proves the broker holds the token, accepts() checks the client's
// "auth" in constant time. The token itself is not kept. The server holds one
// per connection between hello and auth (PeerState::handshake); a connection
// that never answers the challenge is still unauthenticated, so the hello
// timeout closes it. No sockets here.
//
// Thread-safety: none needed; one connection's handshake runs on the server's thread.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "broker_server/message.h"
#include "common/handshake.h"

namespace acb::broker {

class Handshake {
 public:
  /// `role_token`: the admin token for role admin, else the client token.
  /// Throws auth::HandshakeError when no nonce can be drawn.
  Handshake(HelloMessage hello, int version, std::string_view role_token);

  /// The "challenge" frame: the broker nonce and the broker's proof.
  nlohmann::json challenge() const;
  /// True when `auth` proves the role's token for this connection's nonces.
  bool accepts(const AuthMessage& auth) const;

  const HelloMessage& hello() const { return hello_; }
  int version() const { return version_; }

 private:
  HelloMessage hello_;
  int version_;
  auth::Nonce broker_nonce_;
  auth::Proof broker_proof_;
  auth::Proof expected_client_proof_;
};

}  // namespace acb::broker
