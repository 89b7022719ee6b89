// The handshake's proofs (csrc/common/handshake.h) and their hex form
// (csrc/common/hex.h): HMAC-SHA256 against RFC 4231, proofs that differ by
// direction and role, and a wrong token that never verifies.
#include <cctype>
#include <set>
#include <string>

#include "acb_catch.hpp"
#include "common/handshake.h"
#include "common/hex.h"

using acb::auth::Nonce;
using acb::auth::Proof;
using acb::auth::Role;

namespace {

Nonce filled(std::uint8_t value) {
  Nonce n{};
  n.fill(value);
  return n;
}

}  // namespace

TEST_CASE("HMAC-SHA256 matches RFC 4231 test cases 1 and 2", "[handshake]") {
  // Case 1: key = 20 bytes of 0x0b, data = "Hi There".
  CHECK(acb::wire::to_hex(acb::auth::hmac_sha256(std::string(20, '\x0b'), "Hi There")) ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  // Case 2: a key shorter than the hash, key = "Jefe".
  CHECK(acb::wire::to_hex(acb::auth::hmac_sha256("Jefe", "what do ya want for nothing?")) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("the proofs are fixed byte strings another implementation can recompute", "[handshake]") {
  // docs/protocol.md spells these out; python/acb/_handshake.py checks the same value.
  const Nonce client_nonce = filled(0x11);
  const Nonce broker_nonce = filled(0x22);
  std::string message = std::string("acb-broker-v2") + '\0' + "client" + '\0';
  message += std::string(32, '\x11') + std::string(32, '\x22');
  CHECK(acb::auth::broker_proof("tok", Role::client, client_nonce, broker_nonce) ==
        acb::auth::hmac_sha256("tok", message));
  message = std::string("acb-client-v2") + '\0' + "admin" + '\0';
  message += std::string(32, '\x22') + std::string(32, '\x11');
  CHECK(acb::auth::client_proof("tok", Role::admin, broker_nonce, client_nonce) ==
        acb::auth::hmac_sha256("tok", message));
  // The same values as tests/python/test_broker_auth.py: both implementations agree.
  CHECK(acb::wire::to_hex(acb::auth::broker_proof("tok", Role::client, client_nonce, broker_nonce)) ==
        "065baf965e8eb898b74268fae7e91f5ac95282705d3f7a9c9a96f96b64148120");
  CHECK(acb::wire::to_hex(acb::auth::client_proof("tok", Role::admin, broker_nonce, client_nonce)) ==
        "b7476fac22915ed280e92ae0f100175c72122bf3a825d136f9d9bd88f8c453ef");
}

TEST_CASE("proofs differ by direction and by role, and a wrong token does not verify", "[handshake]") {
  const Nonce cn = acb::auth::fresh_nonce();
  const Nonce bn = acb::auth::fresh_nonce();
  const std::set<Proof> proofs{acb::auth::broker_proof("tok", Role::client, cn, bn),
                               acb::auth::broker_proof("tok", Role::admin, cn, bn),
                               acb::auth::client_proof("tok", Role::client, bn, cn),
                               acb::auth::client_proof("tok", Role::admin, bn, cn)};
  CHECK(proofs.size() == 4);
  // Swapping the nonces does not turn one direction's proof into the other's.
  CHECK_FALSE(acb::auth::proofs_equal(acb::auth::broker_proof("tok", Role::client, cn, bn),
                                      acb::auth::client_proof("tok", Role::client, cn, bn)));
  const Proof expected = acb::auth::client_proof("tok", Role::client, bn, cn);
  CHECK(acb::auth::proofs_equal(expected, acb::auth::client_proof("tok", Role::client, bn, cn)));
  CHECK_FALSE(acb::auth::proofs_equal(expected, acb::auth::client_proof("tok2", Role::client, bn, cn)));
  CHECK_FALSE(acb::auth::proofs_equal(expected, acb::auth::client_proof("", Role::client, bn, cn)));
  CHECK_FALSE(acb::auth::proofs_equal(expected, acb::auth::client_proof("tok", Role::client, acb::auth::fresh_nonce(), cn)));
}

TEST_CASE("nonces are fresh", "[handshake]") {
  std::set<Nonce> seen;
  for (int i = 0; i < 64; ++i) seen.insert(acb::auth::fresh_nonce());
  CHECK(seen.size() == 64);
}

TEST_CASE("hex has one spelling: 64 lowercase digits", "[handshake]") {
  const Nonce n = filled(0xab);
  const std::string text = acb::wire::to_hex(n);
  CHECK(text.substr(0, 4) == "abab");
  CHECK(text.size() == 64);
  REQUIRE(acb::wire::parse_hex32(text));
  CHECK(*acb::wire::parse_hex32(text) == n);
  std::string upper = text;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  CHECK_FALSE(acb::wire::parse_hex32(upper));
  CHECK_FALSE(acb::wire::parse_hex32(text.substr(2)));
  CHECK_FALSE(acb::wire::parse_hex32(text + "00"));
  CHECK_FALSE(acb::wire::parse_hex32(std::string(63, '0') + "g"));
  CHECK_FALSE(acb::wire::parse_hex32(""));
}
