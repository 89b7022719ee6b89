#include "broker_server/peer_text.h"

#include <cstdint>

namespace acb::broker {
namespace {

bool is_continuation(unsigned char c) { return (c & 0xc0) == 0x80; }

// Length of the valid UTF-8 sequence at text[i], or 0 when it is not one
// (stray continuation byte, bad lead byte, truncated or overlong sequence,
// surrogate, beyond U+10FFFF).
std::size_t utf8_sequence_length(std::string_view text, std::size_t i) {
  const auto c = static_cast<unsigned char>(text[i]);
  std::size_t length;
  std::uint32_t code;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    length = 2;
    code = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    length = 3;
    code = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    length = 4;
    code = c & 0x07;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    const auto next = static_cast<unsigned char>(text[i + k]);
    if (!is_continuation(next)) return 0;
    code = (code << 6) | (next & 0x3f);
  }
  static constexpr std::uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code < kSmallest[length] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return 0;
  return length;
}

// Where to cut `text` so that at most max_bytes remain and no character is split.
std::size_t cut_point(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return text.size();
  std::size_t cut = max_bytes;
  // Back up over continuation bytes to the lead byte of the split character;
  // at most 3 of them belong to one character.
  for (int k = 0; k < 3 && cut > 0 && is_continuation(static_cast<unsigned char>(text[cut])); ++k) --cut;
  return cut;
}

}  // namespace

std::string bounded_text(std::string_view text, std::size_t max_bytes) {
  const std::size_t cut = cut_point(text, max_bytes);
  std::string out(text.substr(0, cut));
  if (cut < text.size()) out += "...";
  return out;
}

std::string log_text(std::string_view text, std::size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  const std::size_t cut = cut_point(text, max_bytes);
  std::string out;
  out.reserve(cut + 8);
  for (std::size_t i = 0; i < cut;) {
    const auto c = static_cast<unsigned char>(text[i]);
    const std::size_t length = utf8_sequence_length(text.substr(0, cut), i);
    // C1 controls (U+0080..U+009F, e.g. the CSI of terminal escapes) are escaped like C0 ones.
    const bool c1_control = length == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0;
    if (length > 1 && !c1_control) {
      out.append(text.substr(i, length));
      i += length;
      continue;
    }
    if (c1_control) {
      for (std::size_t k = 0; k < 2; ++k) {
        const auto b = static_cast<unsigned char>(text[i + k]);
        out += "\\x";
        out.push_back(kHex[b >> 4]);
        out.push_back(kHex[b & 0xf]);
      }
      i += 2;
      continue;
    }
    ++i;
    switch (c) {
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\\': out += "\\\\"; continue;
      default: break;
    }
    if (length == 1 && c >= 0x20 && c != 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  if (cut < text.size()) out += "...";
  return out;
}

}  // namespace acb::broker
