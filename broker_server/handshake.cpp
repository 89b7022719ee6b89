#include "broker_server/handshake.h"

#include <utility>

#include "broker_server/replies.h"

namespace acb::broker {

Handshake::Handshake(HelloMessage hello, int version, std::string_view role_token)
    : hello_(std::move(hello)), version_(version), broker_nonce_(auth::fresh_nonce()) {
  const auth::Role role = hello_.admin ? auth::Role::admin : auth::Role::client;
  broker_proof_ = auth::broker_proof(role_token, role, hello_.client_nonce, broker_nonce_);
  expected_client_proof_ = auth::client_proof(role_token, role, broker_nonce_, hello_.client_nonce);
}

nlohmann::json Handshake::challenge() const { return challenge_message(broker_nonce_, broker_proof_); }

bool Handshake::accepts(const AuthMessage& auth) const {
  return auth::proofs_equal(auth.client_proof, expected_client_proof_);
}

}  // namespace acb::broker
