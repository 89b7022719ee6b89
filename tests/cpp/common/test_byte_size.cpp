// The one grammar of byte sizes (common/byte_size.h), as a table: what each
// text means, and what is refused with which words.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "acb_catch.hpp"
#include "common/byte_size.h"

using acb::parse_byte_size;

namespace {
constexpr std::uint64_t kKiB = 1024, kMiB = kKiB << 10, kGiB = kMiB << 10, kTiB = kGiB << 10, kPiB = kTiB << 10;
}  // namespace

TEST_CASE("byte sizes: numbers, binary and decimal units, fractions, any case") {
  const struct { const char* text; std::uint64_t bytes; } kCases[] = {
      {"0", 0},
      {"4096", 4096},
      {"4096B", 4096},
      {"4096 b", 4096},
      {"64K", 64 * kKiB},
      {"64KiB", 64 * kKiB},
      {"64kib", 64 * kKiB},
      {"64KB", 64'000},
      {"512M", 512 * kMiB},
      {"512MiB", 512 * kMiB},
      {"512 MiB", 512 * kMiB},
      {"512MB", 512'000'000},
      {"2G", 2 * kGiB},
      {"2GiB", 2 * kGiB},
      {"2gib", 2 * kGiB},
      {"2GB", 2'000'000'000},
      {"80GB", 80'000'000'000},
      {"1.5GiB", 3 * kGiB / 2},
      {"1.5GB", 1'500'000'000},
      {"0.5K", 512},
      {"1.0009765625KiB", 1025},  // exact, not rounded through a double
      {"1.3B", 1},                // fractions of a byte are rounded down
      {"1T", kTiB},
      {"1TiB", kTiB},
      {"1TB", 1'000'000'000'000},
      {"5PiB", 5 * kPiB},
      {"2PB", 2'000'000'000'000'000},
      {"16383.999999999999999999PiB", UINT64_MAX},  // 2^64 minus a thousandth of a byte
      {"18446744073709551615", UINT64_MAX},
  };
  for (const auto& c : kCases) {
    INFO(c.text);
    CHECK(parse_byte_size(c.text) == c.bytes);
  }
}

TEST_CASE("byte sizes: what is refused says why, with the text and the grammar") {
  const struct { const char* text; const char* why; } kCases[] = {
      {"", "does not start with a number"},
      {"GiB", "does not start with a number"},
      {"-1", "does not start with a number"},
      {" 5", "does not start with a number"},
      {".5GiB", "does not start with a number"},
      {"5.GiB", "no digits after its decimal point"},
      {"12XB", "unknown unit \"XB\""},
      {"1.2.3GiB", "unknown unit \".3GiB\""},
      {"5  GiB", "unknown unit \" GiB\""},
      {"5 GiB ", "unknown unit \"GiB \""},
      {"2Gb/s", "unknown unit \"Gb/s\""},
      {"18446744073709551616", "larger than 2^64 - 1 bytes"},
      {"16384PiB", "larger than 2^64 - 1 bytes"},
      {"17179869184TiB", "larger than 2^64 - 1 bytes"},
      {"99999999999999999999999999999", "larger than 2^64 - 1 bytes"},
  };
  for (const auto& c : kCases) {
    INFO(c.text);
    try {
      (void)parse_byte_size(c.text);
      FAIL("accepted");
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      CHECK(what.find(std::string("\"") + c.text + "\"") != std::string::npos);
      CHECK(what.find(c.why) != std::string::npos);
      CHECK(what.find("powers of 1024") != std::string::npos);
    }
  }
}
