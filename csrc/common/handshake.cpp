#include "common/handshake.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <string>

namespace acb::auth {
namespace {

constexpr std::string_view kBrokerLabel = "acb-broker-v2";
constexpr std::string_view kClientLabel = "acb-client-v2";

// label 0x00 role 0x00 first second: every part has a fixed size or ends in 0x00.
std::string proof_message(std::string_view label, Role role, const Nonce& first, const Nonce& second) {
  std::string m;
  m.reserve(label.size() + 8 + first.size() + second.size());
  m.append(label);
  m.push_back('\0');
  m.append(role_name(role));
  m.push_back('\0');
  m.append(reinterpret_cast<const char*>(first.data()), first.size());
  m.append(reinterpret_cast<const char*>(second.data()), second.size());
  return m;
}

}  // namespace

const char* role_name(Role role) { return role == Role::admin ? "admin" : "client"; }

Nonce fresh_nonce() {
  Nonce nonce{};
#ifdef ACB_FUZZING_FIXED_NONCE
  // Only in the fuzz target (tests/fuzz/CMakeLists.txt): a fixed broker nonce
  // lets its seeds carry a client proof that verifies, so that fuzzing
  // reaches everything behind the handshake.
  return nonce;
#endif
  if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1) {
    throw HandshakeError("cannot draw a handshake nonce: OpenSSL RAND_bytes failed (no OS entropy source?)");
  }
  return nonce;
}

Proof hmac_sha256(std::string_view key, std::string_view message) {
  Proof out{};
  unsigned int size = 0;
  // A non-null key pointer even for an empty key: HMAC() takes null as "reuse the last key".
  static const unsigned char kEmpty = 0;
  const void* key_data = key.empty() ? static_cast<const void*>(&kEmpty) : key.data();
  if (HMAC(EVP_sha256(), key_data, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), out.data(), &size) == nullptr ||
      size != out.size()) {
    throw HandshakeError("HMAC-SHA256 failed in OpenSSL");
  }
  return out;
}

Proof broker_proof(std::string_view token, Role role, const Nonce& client_nonce, const Nonce& broker_nonce) {
  return hmac_sha256(token, proof_message(kBrokerLabel, role, client_nonce, broker_nonce));
}

Proof client_proof(std::string_view token, Role role, const Nonce& broker_nonce, const Nonce& client_nonce) {
  return hmac_sha256(token, proof_message(kClientLabel, role, broker_nonce, client_nonce));
}

bool proofs_equal(const Proof& a, const Proof& b) { return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0; }

}  // namespace acb::auth
