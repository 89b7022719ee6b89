// The proofs of the broker handshake (protocol version 2, docs/protocol.md
// "Authentication and roles"): each side shows that it holds the token of the
// connection's role without sending the token or anything a listener can
// reuse.
//
//   broker_proof = HMAC-SHA256(token, "acb-broker-v2" 0x00 role 0x00 client_nonce broker_nonce)
//   client_proof = HMAC-SHA256(token, "acb-client-v2" 0x00 role 0x00 broker_nonce client_nonce)
//
// The key is the token's bytes as read (the file's text without its line
// end, or the environment variable); role is "client" or "admin"; each nonce
// is 32 raw bytes from the OS CSPRNG, fresh for every connection. The two
// labels keep a proof in one direction from ever passing as one in the other,
// the role keeps a client proof from passing as an admin one, and the fixed
// nonce sizes make the concatenation unambiguous. The broker, the C++ client
// and the test fakes use this file; python/acb/_handshake.py is the same in
// Python, and the RFC 4231 vectors check both.
//
// Thread-safety: pure functions (fresh_nonce reads the CSPRNG, which is thread-safe).
#pragma once

#include <stdexcept>
#include <string_view>

#include "common/hex.h"

namespace acb::auth {

using Nonce = wire::Bytes32;
using Proof = wire::Bytes32;

enum class Role { client, admin };
/// "client" or "admin": the wire name, and the role's part of the proofs.
const char* role_name(Role role);

/// The CSPRNG failed (no entropy source); no connection can be made safely.
class HandshakeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// 32 bytes from the OS CSPRNG (OpenSSL RAND_bytes). Throws HandshakeError.
Nonce fresh_nonce();

/// HMAC-SHA256 of `message` under `key` (OpenSSL).
Proof hmac_sha256(std::string_view key, std::string_view message);

/// What the broker sends in "challenge": it holds `token`.
Proof broker_proof(std::string_view token, Role role, const Nonce& client_nonce, const Nonce& broker_nonce);
/// What the client sends in "auth": it holds `token`.
Proof client_proof(std::string_view token, Role role, const Nonce& broker_nonce, const Nonce& client_nonce);

/// Constant-time comparison (CRYPTO_memcmp): the time to reject says nothing
/// about how much of a forged proof was right.
bool proofs_equal(const Proof& a, const Proof& b);

}  // namespace acb::auth
