// Sets of disjoint ranges kept as start -> length maps (the VA space's free
// ranges, the emulated memory's cold and warm file ranges), where adjacent
// ranges are always merged, so each map holds as few entries as possible.
//
// Thread-safety: none (callers lock the map they own).
#pragma once

#include <cstddef>
#include <iterator>
#include <map>

namespace acb::alloc {

/// Adds [start, start + bytes), which must not overlap a range in `ranges`,
/// merging it with the ranges that end where it starts or start where it ends.
template <class Key>
void insert_coalescing(std::map<Key, std::size_t>& ranges, Key start, std::size_t bytes) {
  auto next = ranges.lower_bound(start);
  if (next != ranges.end() && start + bytes == next->first) {
    bytes += next->second;
    next = ranges.erase(next);
  }
  if (next != ranges.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      prev->second += bytes;
      return;
    }
  }
  ranges.emplace(start, bytes);
}

}  // namespace acb::alloc
