// Copy plans (copy_plan.h): every allocated byte in exactly one range, free
// gaps included only up to the limit and only between allocated blocks,
// ranges disjoint and pointing at the matching backup offsets.
#include <cstddef>
#include <deque>
#include <utility>
#include <vector>

#include "acb_catch.hpp"
#include "alloc/copy_plan.h"

using namespace acb::alloc;

namespace {

constexpr DevicePtr kBase = DevicePtr{1} << 40;

/// A segment tiled by blocks of the given (bytes, allocated) pairs.
struct Tiling {
  explicit Tiling(const std::vector<std::pair<std::size_t, bool>>& layout) {
    DevicePtr at = kBase;
    for (const auto& [bytes, allocated] : layout) {
      Block& b = blocks.emplace_back();
      b.address = at;
      b.bytes = bytes;
      b.allocated = allocated;
      at += bytes;
    }
    for (std::size_t i = 0; i + 1 < blocks.size(); ++i) {
      blocks[i].next = &blocks[i + 1];
      blocks[i + 1].prev = &blocks[i];
    }
    backup.resize(at - kBase);
  }
  std::vector<CopyRange> plan(std::size_t max_gap) {
    return plan_copies(&blocks.front(), kBase, backup.data(), max_gap);
  }
  std::deque<Block> blocks;
  std::vector<std::byte> backup;
};

/// (offset, bytes) of each range, checking its host side matches the backup offset.
std::vector<std::pair<std::size_t, std::size_t>> offsets(Tiling& t, std::size_t max_gap) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  for (const CopyRange& r : t.plan(max_gap)) {
    CHECK(static_cast<std::byte*>(r.host) == t.backup.data() + (r.device - kBase));
    out.emplace_back(r.device - kBase, r.bytes);
  }
  return out;
}

using Ranges = std::vector<std::pair<std::size_t, std::size_t>>;

}  // namespace

TEST_CASE("adjacent allocated blocks become one copy", "[copy_plan]") {
  Tiling t({{512, true}, {4096, true}, {1024, true}, {8192, false}});
  CHECK(offsets(t, 0) == Ranges{{0, 5632}});
}

TEST_CASE("a free gap is copied only when it is at most the limit", "[copy_plan]") {
  Tiling t({{4096, false}, {512, true}, {4096, false}, {512, true}, {8192, false}, {512, true},
            {4096, false}});
  // Leading and trailing free blocks are never copied, whatever the limit.
  CHECK(offsets(t, 0) == Ranges{{4096, 512}, {8704, 512}, {17408, 512}});
  CHECK(offsets(t, 4096) == Ranges{{4096, 5120}, {17408, 512}});
  CHECK(offsets(t, 8192) == Ranges{{4096, 13824}});
}

TEST_CASE("a gap of several free blocks counts their bytes together", "[copy_plan]") {
  Tiling t({{512, true}, {2048, false}, {2048, false}, {512, true}});
  CHECK(offsets(t, 4095) == Ranges{{0, 512}, {4608, 512}});
  CHECK(offsets(t, 4096) == Ranges{{0, 5120}});
}

TEST_CASE("no allocated block, no copy", "[copy_plan]") {
  Tiling t({{4096, false}, {4096, false}});
  CHECK(t.plan(SIZE_MAX).empty());
}

TEST_CASE("every allocated byte is in exactly one range, every other copied byte is free",
          "[copy_plan]") {
  std::vector<std::pair<std::size_t, bool>> layout;
  for (std::size_t i = 0; i < 200; ++i)
    layout.emplace_back(512 * (1 + (i * 7) % 13), (i * 5) % 3 != 0);
  Tiling t(layout);
  for (std::size_t max_gap : {std::size_t{0}, std::size_t{1024}, std::size_t{5000}, SIZE_MAX}) {
    std::vector<int> covered(t.backup.size(), 0);
    for (const auto& [offset, bytes] : offsets(t, max_gap))
      for (std::size_t i = offset; i < offset + bytes; ++i) ++covered[i];
    for (const Block& b : t.blocks) {
      for (std::size_t i = b.address - kBase; i < b.address - kBase + b.bytes; ++i) {
        if (b.allocated)
          REQUIRE(covered[i] == 1);
        else
          REQUIRE(covered[i] <= 1);
      }
    }
  }
}
