#include "common/byte_size.h"

#include <cctype>
#include <stdexcept>
#include <string>

namespace acb {

namespace {

struct Unit {
  std::string_view name;  // lower case
  std::uint64_t factor;
};

constexpr std::uint64_t kKi = 1024;
constexpr Unit kUnits[] = {
    {"", 1},        {"b", 1},
    {"k", kKi},     {"kib", kKi},  {"kb", 1000},
    {"m", kKi * kKi}, {"mib", kKi * kKi}, {"mb", 1000'000},
    {"g", kKi * kKi * kKi}, {"gib", kKi * kKi * kKi}, {"gb", 1000'000'000},
    {"t", kKi * kKi * kKi * kKi}, {"tib", kKi * kKi * kKi * kKi}, {"tb", 1000'000'000'000},
    {"p", kKi * kKi * kKi * kKi * kKi}, {"pib", kKi * kKi * kKi * kKi * kKi}, {"pb", 1000'000'000'000'000},
};

constexpr std::string_view kExpected =
    " (a size is a number and a unit: 4096, 512MiB, 1.5GiB, 80GB; units B, K/KiB, M/MiB, G/GiB, T/TiB, P/PiB "
    "in powers of 1024, KB, MB, GB, TB, PB in powers of 1000)";

[[noreturn]] void fail(std::string_view text, const std::string& why) {
  throw std::invalid_argument("\"" + std::string(text) + "\" " + why + std::string(kExpected));
}

bool is_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }

}  // namespace

std::uint64_t parse_byte_size(std::string_view text) {
  std::size_t at = 0;
  const std::size_t whole_begin = at;
  while (at < text.size() && is_digit(text[at])) ++at;
  const std::string_view whole = text.substr(whole_begin, at - whole_begin);
  std::string_view fraction;
  if (at < text.size() && text[at] == '.') {
    const std::size_t fraction_begin = ++at;
    while (at < text.size() && is_digit(text[at])) ++at;
    fraction = text.substr(fraction_begin, at - fraction_begin);
    if (fraction.empty()) fail(text, "has no digits after its decimal point");
  }
  if (whole.empty()) fail(text, "does not start with a number");
  if (at < text.size() && text[at] == ' ') ++at;
  std::string unit(text.substr(at));
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const Unit* found = nullptr;
  for (const Unit& u : kUnits)
    if (unit == u.name) found = &u;
  if (found == nullptr) fail(text, "has an unknown unit \"" + std::string(text.substr(at)) + "\"");

  // Exact arithmetic in 128 bits: whole * factor + fraction * factor / 10^digits.
  using Wide = unsigned __int128;
  constexpr Wide kMax = static_cast<Wide>(UINT64_MAX);
  Wide value = 0;
  for (const char c : whole) {
    value = value * 10 + static_cast<Wide>(c - '0');
    if (value > kMax) fail(text, "is larger than 2^64 - 1 bytes");
  }
  value *= found->factor;
  if (value > kMax) fail(text, "is larger than 2^64 - 1 bytes");
  // Fraction digits past the 20th are ignored: with a factor of at most 2^50
  // they are worth less than 10^-5 of a byte.
  Wide numerator = 0, denominator = 1;
  for (std::size_t i = 0; i < fraction.size() && i < 20; ++i) {
    numerator = numerator * 10 + static_cast<Wide>(fraction[i] - '0');
    denominator *= 10;
  }
  value += numerator * found->factor / denominator;
  if (value > kMax) fail(text, "is larger than 2^64 - 1 bytes");
  return static_cast<std::uint64_t>(value);
}

}  // namespace acb
