// The arena's sub-allocator: malloc/free with stream-ordered reuse, growth,
// empty_cache, and the public entry points that only read state.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "alloc/arena_impl.h"

namespace acb::alloc {
namespace {

std::size_t reservation_bytes(Driver& driver, int device, const ArenaOptions& options,
                              std::size_t granularity) {
  std::size_t wanted = options.va_reserve_bytes;
  if (wanted == 0)
    wanted =
        4 * std::max<std::size_t>(driver.memory_info(device).total_bytes, std::size_t{1} << 30);
  return round_up(wanted, granularity);
}

std::string hex(DevicePtr ptr) {
  char text[32];
  std::snprintf(text, sizeof text, "0x%" PRIxPTR, ptr);
  return text;
}

}  // namespace

Arena::Impl::Impl(Driver& driver_in, int device_in, ArenaOptions options_in)
    : driver(driver_in),
      device(device_in),
      options(options_in),
      granularity(driver_in.granularity(device_in)),
      small_segment_bytes(std::max(round_up(kSmallSegmentBytes, granularity), granularity)),
      va(driver_in, reservation_bytes(driver_in, device_in, options_in, granularity), device_in),
      host_pool(driver_in, device_in, options_in.host_backup_limit_bytes),
      events(driver_in, device_in),
      copier(driver_in, device_in, options_in.copy_chunk_bytes, options_in.copy_chunks_in_flight),
      ready_pool(nullptr, small_segment_bytes) {
  segment_table.assign(va.bytes() / granularity, nullptr);
}

Arena::Impl::~Impl() {
  // Nothing may still run on memory that is about to be unmapped.
  try {
    driver.synchronize_device(device);
  } catch (...) {
  }
  for (Pending& group : pending)
    for (EventHandle event : group.events) events.recycle(event);
  pending.clear();
  stream_pools.clear();
  segments.clear();
}

BlockPool& Arena::Impl::pool_for(StreamHandle stream) {
  if (last_pool != nullptr && last_pool->stream() == stream) return *last_pool;
  for (auto& pool : stream_pools) {
    if (pool->stream() == stream) {
      last_pool = pool.get();
      return *pool;
    }
  }
  stream_pools.push_back(std::make_unique<BlockPool>(stream, small_segment_bytes));
  last_pool = stream_pools.back().get();
  return *last_pool;
}

Segment* Arena::Impl::segment_at(DevicePtr ptr) const {
  if (!va.contains(ptr)) return nullptr;
  return segment_table[(ptr - va.base()) / granularity];
}

void Arena::Impl::insert_free(Block* block, BlockPool& pool) {
  if (Block* prev = block->prev; prev != nullptr && prev->pool == &pool) {
    pool.erase(prev);
    prev->bytes += block->bytes;
    prev->next = block->next;
    if (block->next != nullptr) block->next->prev = prev;
    blocks.recycle(block);
    block = prev;
  }
  if (Block* next = block->next; next != nullptr && next->pool == &pool) {
    pool.erase(next);
    block->bytes += next->bytes;
    block->next = next->next;
    if (next->next != nullptr) next->next->prev = block;
    blocks.recycle(next);
  }
  pool.insert(block);
}

Block* Arena::Impl::merge_unlisted(Block* block) {
  auto is_unlisted_free = [](const Block* b) {
    return b != nullptr && !b->allocated && !b->pending && b->pool == nullptr;
  };
  if (Block* prev = block->prev; is_unlisted_free(prev)) {
    prev->bytes += block->bytes;
    prev->next = block->next;
    if (block->next != nullptr) block->next->prev = prev;
    blocks.recycle(block);
    block = prev;
  }
  if (Block* next = block->next; is_unlisted_free(next)) {
    block->bytes += next->bytes;
    block->next = next->next;
    if (next->next != nullptr) next->next->prev = block;
    blocks.recycle(next);
  }
  return block;
}

void Arena::Impl::split(Block* block, std::size_t rounded, BlockPool& remainder_pool) {
  std::size_t rest = block->bytes - rounded;
  if (rest < min_split_remainder(block->segment->small)) return;
  Block* tail = blocks.make();
  tail->address = block->address + rounded;
  tail->bytes = rest;
  tail->segment = block->segment;
  tail->prev = block;
  tail->next = block->next;
  if (block->next != nullptr) block->next->prev = tail;
  block->next = tail;
  block->bytes = rounded;
  insert_free(tail, remainder_pool);
}

std::size_t Arena::Impl::segment_bytes_for(std::size_t rounded, bool small) const {
  return small ? small_segment_bytes : round_up(rounded, granularity);
}

Block* Arena::Impl::grow(std::size_t rounded, bool small) {
  std::size_t bytes = segment_bytes_for(rounded, small);
  if (bytes == 0) return nullptr;
  DevicePtr address = va.allocate(bytes);
  if (address == 0) return nullptr;
  auto segment = std::make_unique<Segment>();
  segment->address = address;
  segment->bytes = bytes;
  segment->small = small;
  try {
    segment->mapping.emplace(driver, address, bytes, device);
  } catch (const DriverError& error) {
    va.release(address, bytes);
    if (error.out_of_memory()) return nullptr;
    throw;
  } catch (...) {
    va.release(address, bytes);
    throw;
  }
  Block* block = blocks.make();
  block->address = address;
  block->bytes = bytes;
  block->segment = segment.get();
  segment->first_block = block;
  for (std::size_t g = 0; g < bytes / granularity; ++g)
    segment_table[(address - va.base()) / granularity + g] = segment.get();
  segments.push_back(std::move(segment));
  stats.reserved_bytes += bytes;
  stats.active_segments += 1;
  stats.segment_create_count += 1;
  return block;
}

void Arena::Impl::release_segment(Segment* segment) {
  for (Block* b = segment->first_block; b != nullptr;) {
    Block* next = b->next;
    if (b->pool != nullptr) b->pool->erase(b);
    blocks.recycle(b);
    b = next;
  }
  segment->first_block = nullptr;
  for (std::size_t g = 0; g < segment->bytes / granularity; ++g)
    segment_table[(segment->address - va.base()) / granularity + g] = nullptr;
  if (segment->resident()) {
    stats.reserved_bytes -= segment->bytes;
    stats.active_segments -= 1;
  } else {
    stats.offloaded_bytes -= segment->bytes;
  }
  stats.segment_release_count += 1;
  DevicePtr address = segment->address;
  std::size_t bytes = segment->bytes;
  auto it = std::find_if(segments.begin(), segments.end(),
                         [&](const auto& s) { return s.get() == segment; });
  segments.erase(it);  // unmaps and releases the physical memory, returns the backup
  va.release(address, bytes);
  sync_host_stats();
}

std::size_t Arena::Impl::release_free_segments() {
  bool any = !pending.empty();
  auto releasable = [](const Segment& s) {
    return s.resident() && s.allocated_blocks == 0 && !s.pinned();
  };
  for (const auto& s : segments) any = any || releasable(*s);
  if (!any) return 0;
  // Freed blocks may still be used by queued work on their streams.
  driver.synchronize_device(device);
  process_pending(true);
  std::vector<Segment*> empty;
  for (const auto& s : segments)
    if (releasable(*s)) empty.push_back(s.get());
  std::size_t released = 0;
  for (Segment* s : empty) {
    released += s->bytes;
    release_segment(s);
  }
  return released;
}

void Arena::Impl::process_pending(bool wait) {
  std::size_t kept = 0;
  for (std::size_t i = 0; i < pending.size(); ++i) {
    Pending& group = pending[i];
    bool done = true;
    for (EventHandle event : group.events) {
      if (wait) {
        driver.synchronize_event(event);
      } else if (!driver.event_done(event)) {
        done = false;
        break;
      }
    }
    if (!done) {
      if (kept != i) pending[kept] = std::move(group);
      ++kept;
      continue;
    }
    for (EventHandle event : group.events) events.recycle(event);
    BlockPool& target = group.to_ready ? ready_pool : pool_for(group.target_stream);
    for (Block* b : group.blocks) {
      b->pending = false;
      insert_free(b, target);
    }
  }
  pending.resize(kept);
}

bool Arena::Impl::reclaim_other_streams(std::size_t rounded, bool small, StreamHandle stream) {
  // Move one fitting block (the best fit of the first pool that has one), so
  // that a busy stream keeps the rest of its cache.
  for (auto& pool : stream_pools) {
    if (pool->stream() == stream || !pool->has_fit(rounded, small)) continue;
    Pending group;
    group.events.push_back(events.record(pool->stream()));
    group.to_ready = true;
    Block* block = pool->take_best_fit(rounded, small);
    block->pending = true;
    group.blocks.push_back(block);
    pending.push_back(std::move(group));
    process_pending(false);
    return true;
  }
  return false;
}

Block* Arena::Impl::allocate(std::size_t rounded, StreamHandle stream) {
  const bool small = rounded <= kSmallRequestBytes;
  if (!pending.empty()) process_pending(false);
  BlockPool& own = pool_for(stream);
  BlockPool* from = &own;
  Block* block = own.take_best_fit(rounded, small);
  if (block == nullptr) {
    from = &ready_pool;
    block = ready_pool.take_best_fit(rounded, small);
    if (block == nullptr && reclaim_other_streams(rounded, small, stream))
      block = ready_pool.take_best_fit(rounded, small);
  }
  if (block == nullptr) {
    from = &pool_for(stream);
    block = grow(rounded, small);
  }
  if (block == nullptr) {
    // Last resort before failing: wait for every stream, give back cached
    // segments of this arena, and try again.
    driver.synchronize_device(device);
    process_pending(true);
    release_free_segments();
    from = &pool_for(stream);
    block = from->take_best_fit(rounded, small);
    if (block == nullptr) {
      from = &ready_pool;
      block = ready_pool.take_best_fit(rounded, small);
    }
    if (block == nullptr) {
      from = &pool_for(stream);
      block = grow(rounded, small);
    }
  }
  if (block == nullptr) return nullptr;

  split(block, rounded, *from);
  block->allocated = true;
  block->stream = stream;
  Segment* segment = block->segment;
  segment->allocated_bytes += block->bytes;
  segment->allocated_blocks += 1;
  segment->backup_current = false;  // new data will be written: the backup is stale
  segment->last_use_tick = ++tick;
  ptr_map.insert(block->address, block);
  stats.allocated_bytes += block->bytes;
  stats.alloc_count += 1;
  update_peaks();
  return block;
}

void Arena::Impl::deallocate(Block* block, StreamHandle stream) {
  // Streams whose queued work may still use the block (known before any state changes).
  std::vector<StreamHandle> others;
  for (StreamHandle s : block->extra_streams)
    if (s != block->stream && std::find(others.begin(), others.end(), s) == others.end())
      others.push_back(s);
  if (stream != block->stream && std::find(others.begin(), others.end(), stream) == others.end())
    others.push_back(stream);

  Segment* segment = block->segment;
  Pending group;
  if (segment->resident() && !others.empty()) {
    try {
      for (StreamHandle s : others) group.events.push_back(events.record(s));
    } catch (...) {
      for (EventHandle event : group.events) events.recycle(event);
      throw;
    }
  }

  ptr_map.erase(block->address);
  block->allocated = false;
  block->extra_streams.clear();
  segment->allocated_bytes -= block->bytes;
  segment->allocated_blocks -= 1;
  stats.allocated_bytes -= block->bytes;
  stats.free_count += 1;

  if (!segment->resident()) {
    // Its memory is not mapped: nothing can run on it, and a fully free
    // offloaded segment has nothing left worth keeping.
    merge_unlisted(block);
    if (segment->allocated_blocks == 0) release_segment(segment);
    return;
  }
  if (!group.events.empty()) {
    group.blocks.push_back(block);
    group.target_stream = block->stream;
    block->pending = true;
    pending.push_back(std::move(group));
    return;
  }
  insert_free(block, pool_for(block->stream));
}

std::string Arena::Impl::memory_summary() const {
  MemoryInfo info = driver.memory_info(device);
  std::ostringstream out;
  out << "device " << device << " (" << driver.name() << ") free " << info.free_bytes << " of "
      << info.total_bytes << " bytes; this arena reserved " << stats.reserved_bytes << " bytes ("
      << stats.offloaded_bytes << " offloaded), allocated " << stats.allocated_bytes << " bytes";
  return out.str();
}

void Arena::Impl::sync_host_stats() {
  stats.host_backup_bytes = host_pool.in_use_bytes();
  stats.host_pinned_bytes = host_pool.pinned_bytes();
  update_peaks();
}

void Arena::Impl::update_peaks() {
#define ACB_PEAK_gauge(name) stats.name##_peak = std::max(stats.name##_peak, stats.name);
#define ACB_PEAK_counter(name)
#define ACB_PEAK(name, kind) ACB_PEAK_##kind(name)
  ACB_ALLOC_STATS(ACB_PEAK)
#undef ACB_PEAK
#undef ACB_PEAK_counter
#undef ACB_PEAK_gauge
}

// --- public API ---------------------------------------------------------------

Arena::Arena(Driver& driver, int device, ArenaOptions options)
    : impl_(std::make_unique<Impl>(driver, device, options)) {}

Arena::~Arena() = default;

void* Arena::malloc(std::size_t bytes, StreamHandle stream) {
  if (bytes == 0) return nullptr;
  const std::size_t rounded = round_up(bytes, kMinBlockBytes);
  // Each handler call that made room is followed by a retry; the handler is
  // called again only while the device's free memory grew since the previous
  // failure (the broker is making progress), and at most kOomHandlerCalls times.
  int handler_calls = 0;
  std::size_t free_at_last_failure = 0;
  bool has_handler = false;
  while (true) {
    std::function<bool(std::size_t)> handler;
    std::string message;
    std::size_t free_bytes = 0;
    std::size_t shortfall = 0;
    {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      if (rounded != 0 && rounded <= impl_->va.bytes()) {
        if (Block* block = impl_->allocate(rounded, stream))
          return reinterpret_cast<void*>(block->address);
      }
      impl_->stats.oom_count += 1;
      free_bytes = impl_->driver.memory_info(impl_->device).free_bytes;
      shortfall = impl_->segment_bytes_for(rounded, rounded <= kSmallRequestBytes);
      message = "acb: out of memory: tried to allocate " + std::to_string(bytes) + " bytes (a new segment of " +
                std::to_string(shortfall) + " bytes) on " + impl_->memory_summary() +
                "; largest free VA range " + std::to_string(impl_->va.largest_free_bytes()) + " bytes";
      const bool progress = handler_calls == 0 || free_bytes > free_at_last_failure;
      if (progress && handler_calls < kOomHandlerCalls) handler = impl_->oom_handler;
      has_handler = static_cast<bool>(impl_->oom_handler);
      // What was tried, so that the error says why waiting or evicting did not help.
      message += "; tried: releasing this arena's cached free segments";
      if (handler_calls > 0)
        message += ", then " + std::to_string(handler_calls) +
                   " out-of-memory handler call(s) (the broker evicting others) that made room "
                   "which did not suffice";
    }
    free_at_last_failure = free_bytes;
    if (handler) {
      if (handler(shortfall)) {
        ++handler_calls;
        continue;
      }
      message += ", then asking the out-of-memory handler (the broker) for " +
                 std::to_string(shortfall) + " bytes, which could not make room";
    } else if (!has_handler) {
      message += "; no out-of-memory handler is set (no broker to ask for room)";
    }
    throw OutOfMemory(message, bytes, free_bytes);
  }
}

void Arena::free(void* ptr, StreamHandle stream) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto address = reinterpret_cast<DevicePtr>(ptr);
  Block* block = impl_->ptr_map.find(address);
  if (block == nullptr) {
    throw std::invalid_argument(
        "Arena::free(" + hex(address) + ") on device " + std::to_string(impl_->device) +
        ": not a pointer returned by this arena's malloc, or already freed");
  }
  impl_->deallocate(block, stream);
}

void Arena::record_stream(void* ptr, StreamHandle stream) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto address = reinterpret_cast<DevicePtr>(ptr);
  Block* block = impl_->ptr_map.find(address);
  if (block == nullptr) {
    throw std::invalid_argument("Arena::record_stream(" + hex(address) + ") on device " +
                                std::to_string(impl_->device) +
                                ": not an allocated pointer of this arena");
  }
  if (stream == block->stream) return;
  auto& extra = block->extra_streams;
  if (std::find(extra.begin(), extra.end(), stream) == extra.end()) extra.push_back(stream);
}

void Arena::empty_cache() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->release_free_segments();
}

void Arena::set_out_of_memory_handler(std::function<bool(std::size_t)> handler) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->oom_handler = std::move(handler);
}

bool Arena::is_resident(const void* ptr, std::size_t bytes) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto address = reinterpret_cast<DevicePtr>(ptr);
  if (bytes == 0) bytes = 1;
  if (!impl_->va.contains(address) || address + bytes - 1 < address ||
      !impl_->va.contains(address + bytes - 1))
    return false;
  DevicePtr end = address + bytes;
  while (address < end) {
    Segment* segment = impl_->segment_at(address);
    if (segment == nullptr || !segment->resident()) return false;
    address = segment->address + segment->bytes;
  }
  return true;
}

bool Arena::owns(const void* ptr) const {
  // The reservation never changes after construction: no lock needed.
  return impl_->va.contains(reinterpret_cast<DevicePtr>(ptr));
}

std::size_t Arena::resident_bytes() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->stats.reserved_bytes;
}

std::size_t Arena::host_backup_limit_bytes() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->host_pool.limit_bytes();
}

Stats Arena::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->stats;
}

void Arena::validate() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->validate();
}

int Arena::device() const { return impl_->device; }
Driver& Arena::driver() const { return impl_->driver; }

}  // namespace acb::alloc
