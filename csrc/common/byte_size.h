// Byte sizes as people write them, in one grammar for every place acb reads
// one: broker capacities (--device, config), ACB_EMULATED_DEVICE, the arena's
// limits from the environment, the benchmarks' sizes (docs/operations.md,
// "Byte sizes").
//
//   size   := number [space] [unit]
//   number := digits ["." digits]            (1.5GiB is 1610612736 bytes)
//   unit   := B | K | KiB | M | MiB | G | GiB | T | TiB | P | PiB   (powers of 1024)
//           | KB | MB | GB | TB | PB                                 (powers of 1000)
//
// Units are case-insensitive; a single letter is binary, as in `ulimit` and
// `free -h`; a fraction is rounded down to whole bytes. Zero is a size:
// callers that need a positive one say so in their own words.
//
// Thread-safety: pure function.
#pragma once

#include <cstdint>
#include <string_view>

namespace acb {

/// The bytes `text` names. Throws std::invalid_argument saying what is wrong
/// with it (not a number, an unknown unit, above 2^64 - 1).
std::uint64_t parse_byte_size(std::string_view text);

}  // namespace acb
