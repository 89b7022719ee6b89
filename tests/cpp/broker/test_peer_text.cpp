// bounded_text and log_text: peer text cut at UTF-8 character boundaries,
// and escaped for the log.
#include <string>

#include <nlohmann/json.hpp>

#include "acb_catch.hpp"
#include "broker_server/message.h"
#include "broker_server/peer_text.h"

using namespace acb::broker;

namespace {

std::string rejection(const nlohmann::json& message) {
  try {
    (void)validate_message(message);
  } catch (const ProtocolError& e) {
    return e.what();
  }
  return "";
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

}  // namespace

TEST_CASE("bounded_text cuts at character boundaries, never inside one") {
  CHECK(bounded_text("short", 64) == "short");
  CHECK(bounded_text("abcdef", 3) == "abc...");
  const std::string e_acute = "\xc3\xa9";                                      // 2 bytes
  CHECK(bounded_text("a" + repeat(e_acute, 40), 64) == "a" + repeat(e_acute, 31) + "...");  // 63 bytes kept
  CHECK(bounded_text(repeat(e_acute, 40), 64) == repeat(e_acute, 32) + "...");
  const std::string euro = "\xe2\x82\xac";         // 3 bytes
  const std::string emoji = "\xf0\x9f\x98\x80";    // 4 bytes
  for (std::size_t max = 0; max <= 12; ++max) {
    INFO(max);
    CHECK(bounded_text(repeat(euro, 4), max) == repeat(euro, static_cast<int>(max / 3)) + (max < 12 ? "..." : ""));
    CHECK(bounded_text(repeat(emoji, 3), max) ==
          repeat(emoji, static_cast<int>(max / 4)) + (max < 12 ? "..." : ""));
  }
}

TEST_CASE("the unknown-op error of a multi-byte op is valid UTF-8 (the text that killed the broker)") {
  const std::string op = "a" + repeat("\xc3\xa9", 40);
  const std::string reason = rejection({{"op", op}});
  CHECK(reason == "unknown op \"a" + repeat("\xc3\xa9", 31) + "...\"");
  // nlohmann's default (strict) dump throws on invalid UTF-8: the cut must leave none.
  CHECK_NOTHROW(nlohmann::json(reason).dump());
}

TEST_CASE("log_text escapes control characters and invalid bytes and bounds the length") {
  CHECK(log_text("plain name") == "plain name");
  CHECK(log_text("two\nlines\r\tand\\") == "two\\nlines\\r\\tand\\\\");
  CHECK(log_text(std::string("nul\0bell\a\x1b[2J\x7f", 14)) == "nul\\x00bell\\x07\\x1b[2J\\x7f");
  CHECK(log_text("caf\xc3\xa9") == "caf\xc3\xa9");                 // valid UTF-8 stays readable
  CHECK(log_text("\xc2\x9b" "31m") == "\\xc2\\x9b31m");          // C1 CSI is escaped
  CHECK(log_text("bad \xff\xc3 \xed\xa0\x80") == "bad \\xff\\xc3 \\xed\\xa0\\x80");  // invalid, surrogate
  CHECK(log_text(std::string(1000, 'x')) == std::string(kMaxLoggedPeerBytes, 'x') + "...");
  CHECK(log_text("ab\xc3\xa9", 3) == "ab...");  // cut before the split character
  CHECK(log_text("abc", 0) == "...");
}
