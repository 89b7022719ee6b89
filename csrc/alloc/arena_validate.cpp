// Arena::validate(): every invariant of the arena, checked from scratch.
// Tests call it after every step; it is O(blocks + granules).
#include <map>
#include <set>
#include <stdexcept>
#include <string>

#include "alloc/arena_impl.h"

namespace acb::alloc {
namespace {

[[noreturn]] void broken(const std::string& invariant, const std::string& detail) {
  throw std::logic_error("Arena::validate: " + invariant + ": " + detail);
}

std::string at(DevicePtr address) { return "at offset " + std::to_string(address); }

}  // namespace

void Arena::Impl::validate() const {
  std::set<const BlockPool*> pools{&ready_pool};
  for (const auto& p : stream_pools) pools.insert(p.get());

  std::set<const Block*> pending_blocks;
  for (const Pending& group : pending) {
    if (group.events.empty())
      broken("pending blocks wait on events", "a pending group has no event");
    for (const Block* b : group.blocks) {
      if (!b->pending || b->allocated || b->pool != nullptr)
        broken("pending blocks are free and unlisted", "block " + at(b->address - va.base()));
      if (!b->segment->resident())
        broken("pending blocks are resident", "block " + at(b->address - va.base()));
      pending_blocks.insert(b);
    }
  }

  std::size_t allocated_bytes = 0, allocated_blocks = 0, reserved = 0, offloaded = 0,
              resident_count = 0;
  std::size_t backup_bytes = 0, listed_blocks = 0, pinned_bytes = 0;
  std::map<DevicePtr, std::size_t> spans;  // segments by address, to check the VA tiling
  for (const auto& owned : segments) {
    const Segment* s = owned.get();
    const std::string where = "segment " + at(s->address - va.base());
    if (s->bytes == 0 || s->bytes % granularity != 0 || (s->address - va.base()) % granularity != 0)
      broken("segments are granularity-aligned", where);
    if (s->small && s->bytes != small_segment_bytes)
      broken("small segments have the small segment size", where);
    spans.emplace(s->address, s->bytes);
    for (std::size_t g = 0; g < s->bytes / granularity; ++g)
      if (segment_table[(s->address - va.base()) / granularity + g] != s)
        broken("the segment table maps each granule to its segment", where);

    // Blocks tile the segment exactly.
    DevicePtr expect = s->address;
    const Block* prev = nullptr;
    std::size_t seg_allocated = 0, seg_blocks = 0;
    for (const Block* b = s->first_block; b != nullptr; b = b->next) {
      const std::string bwhere = "block " + at(b->address - va.base()) + " in " + where;
      if (b->segment != s) broken("blocks point to their segment", bwhere);
      if (b->prev != prev) broken("block neighbour links are symmetric", bwhere);
      if (b->address != expect)
        broken("blocks tile each segment exactly", bwhere + " (gap or overlap)");
      if (b->bytes == 0 || b->bytes % kMinBlockBytes != 0)
        broken("block sizes are multiples of 512", bwhere);
      expect += b->bytes;
      if (b->allocated) {
        if (b->pool != nullptr || b->pending)
          broken("allocated blocks are in no free pool", bwhere);
        if (ptr_map.find(b->address) != b)
          broken("the pointer map holds every allocated block", bwhere);
        seg_allocated += b->bytes;
        ++seg_blocks;
      } else if (b->pending) {
        if (!pending_blocks.count(b)) broken("pending blocks are in a pending group", bwhere);
      } else if (s->resident()) {
        if (b->pool == nullptr || !pools.count(b->pool))
          broken("free resident blocks are in a free pool", bwhere);
        ++listed_blocks;
        if (prev != nullptr && !prev->allocated && !prev->pending && prev->pool == b->pool)
          broken("no two adjacent free blocks in one pool", bwhere);
      } else {
        if (b->pool != nullptr) broken("free blocks of offloaded segments are in no pool", bwhere);
        if (prev != nullptr && !prev->allocated)
          broken("free blocks of offloaded segments are merged", bwhere);
      }
      prev = b;
    }
    if (expect != s->address + s->bytes)
      broken("blocks tile each segment exactly", where + " (short)");
    if (seg_allocated != s->allocated_bytes || seg_blocks != s->allocated_blocks)
      broken("segment allocation counts match its blocks", where);
    allocated_bytes += seg_allocated;
    allocated_blocks += seg_blocks;

    if (s->resident()) {
      reserved += s->bytes;
      ++resident_count;
      if (s->mapping->address() != s->address || s->mapping->bytes() != s->bytes)
        broken("a resident segment's mapping covers it", where);
    } else {
      offloaded += s->bytes;
      if (!s->backup || !s->backup_current)
        broken("offloaded segments have a current backup", where);
      if (s->allocated_blocks == 0) broken("offloaded segments hold live data", where);
      if (s->pinned()) broken("pinned segments are resident", where);
    }
    if (s->pinned()) pinned_bytes += s->bytes;
    if (s->backup) {
      if (s->backup.bytes() != HostBackupPool::class_bytes(s->bytes))
        broken("a backup has its segment's size class", where);
      backup_bytes += s->backup.bytes();
    }
    if (s->last_use_tick > tick) broken("LRU ticks are not in the future", where);
  }

  // The pointer map holds exactly the allocated blocks.
  if (ptr_map.size() != allocated_blocks)
    broken("the pointer map holds exactly the allocated blocks",
           std::to_string(ptr_map.size()) + " entries for " + std::to_string(allocated_blocks) +
               " blocks");
  ptr_map.for_each([&](DevicePtr key, const Block* b) {
    if (b->address != key || !b->allocated)
      broken("pointer map entries are allocated blocks", at(key - va.base()));
  });

  // Free pools hold only free, resident, unpended blocks that point back to them.
  std::size_t pooled = 0;
  for (const BlockPool* pool : pools) {
    pool->validate();
    pool->for_each([&](Block* b) {
      if (b->allocated || b->pending || b->pool != pool || !b->segment->resident())
        broken("size-class lists and sets hold only free resident blocks",
               "block " + at(b->address - va.base()));
      ++pooled;
    });
  }
  if (pooled != listed_blocks)
    broken("every listed block belongs to a live segment", std::to_string(pooled) + " listed, " +
                                                               std::to_string(listed_blocks) +
                                                               " found in segments");

  // Segments and free VA ranges tile the reservation.
  for (const auto& [address, bytes] : va.free_ranges()) spans.emplace(address, bytes);
  DevicePtr cursor = va.base();
  for (const auto& [address, bytes] : spans) {
    if (address != cursor)
      broken("segments and free VA ranges tile the reservation", at(address - va.base()));
    cursor += bytes;
  }
  if (cursor != va.base() + va.bytes())
    broken("segments and free VA ranges tile the reservation", "short at the end");
  std::size_t table_entries = 0;
  for (const Segment* s : segment_table) table_entries += s != nullptr;
  if (table_entries * granularity != reserved + offloaded)
    broken("the segment table covers exactly the segments",
           std::to_string(table_entries) + " granules mapped");

  // Stats agree with the blocks.
  auto check = [](const char* name, std::uint64_t have, std::uint64_t want) {
    if (have != want)
      broken("stats agree with the blocks", std::string(name) + " is " + std::to_string(have) +
                                                ", blocks say " + std::to_string(want));
  };
  check("allocated_bytes", stats.allocated_bytes, allocated_bytes);
  check("reserved_bytes", stats.reserved_bytes, reserved);
  check("active_segments", stats.active_segments, resident_count);
  check("offloaded_bytes", stats.offloaded_bytes, offloaded);
  check("host_backup_bytes", stats.host_backup_bytes, backup_bytes);
  check("export_pinned_bytes", stats.export_pinned_bytes, pinned_bytes);
  check("host backup pool in-use bytes", host_pool.in_use_bytes(), backup_bytes);
  check("host_pinned_bytes", stats.host_pinned_bytes, host_pool.pinned_bytes());
  if (host_pool.limit_bytes() != 0 && host_pool.in_use_bytes() > host_pool.limit_bytes())
    broken("host backups stay within the limit",
           std::to_string(host_pool.in_use_bytes()) + " bytes in use");
#define ACB_CHECK_PEAK_gauge(name) \
  if (stats.name##_peak < stats.name) broken("peaks are at least the current value", #name);
#define ACB_CHECK_PEAK_counter(name)
#define ACB_CHECK_PEAK(name, kind) ACB_CHECK_PEAK_##kind(name)
  ACB_ALLOC_STATS(ACB_CHECK_PEAK)
#undef ACB_CHECK_PEAK
#undef ACB_CHECK_PEAK_counter
#undef ACB_CHECK_PEAK_gauge
}

}  // namespace acb::alloc
