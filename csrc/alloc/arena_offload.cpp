// Offload and restore of segments to and from pinned host backups, at the
// same addresses, and the write tracking that decides what must be copied.
#include <algorithm>
#include <chrono>
#include <string>

#include "alloc/arena_impl.h"
#include "alloc/copy_plan.h"

namespace acb::alloc {

void Arena::Impl::make_offloaded(Segment* segment) {
  // Free blocks leave their pools (nothing may allocate unmapped memory) and
  // merge: with the device synchronised no stream constraint remains.
  for (Block* b = segment->first_block; b != nullptr; b = b->next) {
    if (b->pool != nullptr) b->pool->erase(b);
  }
  for (Block* b = segment->first_block; b != nullptr; b = b->next) {
    if (!b->allocated) b = merge_unlisted(b);
  }
  segment->mapping.reset();  // unmap + release; the VA stays reserved
  stats.reserved_bytes -= segment->bytes;
  stats.active_segments -= 1;
  stats.offloaded_bytes += segment->bytes;
}

void Arena::Impl::make_resident(Segment* segment) {
  stats.reserved_bytes += segment->bytes;
  stats.active_segments += 1;
  stats.offloaded_bytes -= segment->bytes;
  for (Block* b = segment->first_block; b != nullptr;) {
    Block* next = b->next;
    if (!b->allocated) insert_free(b, ready_pool);
    b = next;
  }
  segment->backup_current = true;  // device and backup hold the same bytes now
  segment->last_use_tick = ++tick;
}

OffloadResult Arena::Impl::offload(std::size_t budget_bytes) {
  const auto start = std::chrono::steady_clock::now();
  OffloadResult result;
  driver.synchronize_device(device);
  process_pending(true);

  // Plan: fully free segments first (nothing to copy), then live segments,
  // least recently used first, until the budget is covered.
  std::vector<Segment*> empty;
  std::vector<Segment*> live;
  for (const auto& s : segments) {
    if (!s->resident() || s->pinned()) continue;  // pinned: exported, must stay (Arena::pin)
    (s->allocated_blocks == 0 ? empty : live).push_back(s.get());
  }
  std::sort(live.begin(), live.end(),
            [](const Segment* a, const Segment* b) { return a->last_use_tick < b->last_use_tick; });
  std::vector<Segment*> release_now;
  std::vector<Segment*> offload_now;
  std::size_t planned = 0;
  for (Segment* s : empty) {
    if (planned >= budget_bytes) break;
    release_now.push_back(s);
    planned += s->bytes;
  }
  for (Segment* s : live) {
    if (planned >= budget_bytes) break;
    offload_now.push_back(s);
    planned += s->bytes;
  }

  // Host backups: check the limit before anything changes.
  std::size_t need_new = 0;
  for (Segment* s : offload_now)
    if (!s->backup) need_new += HostBackupPool::class_bytes(s->bytes);
  if (host_pool.limit_bytes() != 0 && !host_pool.fits(need_new)) {
    // Backups of segments that stay resident are only a shortcut for a later
    // offload: they may be dropped to make room, least recently used first.
    std::vector<Segment*> droppable;
    std::size_t droppable_bytes = 0;
    for (const auto& s : segments) {
      if (s->resident() && s->backup &&
          std::find(offload_now.begin(), offload_now.end(), s.get()) == offload_now.end()) {
        droppable.push_back(s.get());
        droppable_bytes += s->backup.bytes();
      }
    }
    if (host_pool.in_use_bytes() + need_new > host_pool.limit_bytes() + droppable_bytes) {
      throw HostBackupLimitExceeded(
          "Arena::offload(budget=" + std::to_string(budget_bytes) + ") on device " +
          std::to_string(device) + ": needs " + std::to_string(need_new) +
          " bytes of new host backup for " + std::to_string(offload_now.size()) +
          " segments, but the host backup limit is " + std::to_string(host_pool.limit_bytes()) +
          " bytes with " + std::to_string(host_pool.in_use_bytes()) + " in use (" +
          std::to_string(droppable_bytes) +
          " droppable); nothing was released: the memory stays on the device (raise "
          "ACB_HOST_BACKUP_LIMIT, e.g. to 75% of host RAM or 64GiB)");
    }
    std::sort(droppable.begin(), droppable.end(), [](const Segment* a, const Segment* b) {
      return a->last_use_tick < b->last_use_tick;
    });
    for (Segment* s : droppable) {
      if (host_pool.fits(need_new)) break;
      s->backup.reset();
      s->backup_current = false;
    }
  }
  for (Segment* s : offload_now) {
    if (!s->backup) {
      s->backup = host_pool.acquire(s->bytes);
      s->backup_current = false;
    }
  }
  sync_host_stats();

  // Fully free segments go first: nothing to copy.
  for (Segment* s : release_now) {
    result.released_bytes += s->bytes;
    release_segment(s);
  }

  // Copy the allocated ranges of dirty segments (clean ones are skipped),
  // coalesced (copy_plan.h), then release them all once every copy is done.
  // Not one by one while later copies are in flight: cuMemUnmap is
  // documented as synchronous (cuda.h marks it \note_sync), so an unmap in
  // the middle would stall the host until the queue drained and leave the
  // copy engine idle while it ran. A failed copy leaves every one of them
  // resident (only the fully free segments above are released).
  const std::uint64_t ranges_before = copier.ranges_enqueued();
  const std::uint64_t batches_before = copier.batches_enqueued();
  try {
    for (Segment* s : offload_now) {
      if (s->backup_current) {
        result.skipped_clean_bytes += s->allocated_bytes;
        continue;
      }
      copier.copy(plan_copies(s->first_block, s->address, s->backup.data(),
                              options.copy_merge_gap_bytes),
                  CopyDirection::to_host);
      result.copied_bytes += s->allocated_bytes;
    }
    copier.finish();
  } catch (...) {
    // Let the copies already queued end before anyone reuses their backups.
    try {
      copier.finish();
    } catch (...) {
    }
    throw;
  }
  for (Segment* s : offload_now) {
    s->backup_current = true;
    result.released_bytes += s->bytes;
    make_offloaded(s);
  }
  stats.copy_range_count += copier.ranges_enqueued() - ranges_before;
  stats.copy_batch_count += copier.batches_enqueued() - batches_before;
  stats.offload_count += 1;
  stats.offload_copied_bytes += result.copied_bytes;
  stats.skipped_clean_bytes += result.skipped_clean_bytes;
  stats.offload_ns += elapsed_ns(start);
  sync_host_stats();
  return result;
}

std::size_t Arena::Impl::restore_segments(std::vector<Segment*> wanted) {
  if (wanted.empty()) return 0;
  const auto start = std::chrono::steady_clock::now();
  std::size_t needed = 0;
  for (Segment* s : wanted) needed += s->bytes;

  // Map each segment and enqueue its copies at once, so that creating and
  // mapping the next segment overlaps the copies of the previous ones. On
  // any failure, wait for the copies and undo exactly what this call mapped.
  std::vector<Segment*> mapped;
  auto roll_back = [&] {
    try {
      copier.finish();
    } catch (...) {
    }
    for (Segment* s : mapped) s->mapping.reset();
    mapped.clear();
  };
  bool released_cache = false;
  std::size_t copied = 0;
  const std::uint64_t ranges_before = copier.ranges_enqueued();
  const std::uint64_t batches_before = copier.batches_enqueued();
  for (std::size_t i = 0; i < wanted.size();) {
    Segment* s = wanted[i];
    try {
      s->mapping.emplace(driver, s->address, s->bytes, device);
    } catch (const DriverError& error) {
      if (!error.out_of_memory()) {
        roll_back();
        throw;
      }
      if (!released_cache) {
        released_cache = true;
        if (release_free_segments() > 0) continue;
      }
      std::size_t mapped_bytes = 0;
      for (Segment* m : mapped) mapped_bytes += m->bytes;
      roll_back();
      MemoryInfo info = driver.memory_info(device);
      throw OutOfMemory("Arena::restore on device " + std::to_string(device) +
                            ": out of memory: restoring " + std::to_string(wanted.size()) +
                            " segments needs " + std::to_string(needed) + " bytes, only " +
                            std::to_string(mapped_bytes) + " could be mapped; " + memory_summary() +
                            "; nothing was restored, backups are kept",
                        needed, info.free_bytes);
    } catch (...) {
      roll_back();
      throw;
    }
    mapped.push_back(s);
    ++i;
    try {
      copier.copy(plan_copies(s->first_block, s->address, s->backup.data(),
                              options.copy_merge_gap_bytes),
                  CopyDirection::to_device);
      copied += s->allocated_bytes;
    } catch (...) {
      roll_back();
      throw;
    }
  }
  try {
    copier.finish();
  } catch (...) {
    roll_back();
    throw;
  }
  for (Segment* s : mapped) make_resident(s);
  stats.copy_range_count += copier.ranges_enqueued() - ranges_before;
  stats.copy_batch_count += copier.batches_enqueued() - batches_before;
  stats.restore_count += 1;
  stats.restored_bytes += copied;
  stats.restore_ns += elapsed_ns(start);
  update_peaks();
  return needed;
}

// --- public API ---------------------------------------------------------------

void Arena::mark_written(const void* ptr, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto address = reinterpret_cast<DevicePtr>(ptr);
  if (bytes == 0 || !impl_->va.contains(address)) return;  // not this arena's memory
  DevicePtr end = std::min(address + bytes, impl_->va.base() + impl_->va.bytes());
  if (end < address) end = impl_->va.base() + impl_->va.bytes();
  const std::uint64_t tick = ++impl_->tick;
  while (address < end) {
    Segment* segment = impl_->segment_at(address);
    if (segment == nullptr) {
      address = (address & ~(impl_->granularity - 1)) + impl_->granularity;
      continue;
    }
    segment->backup_current = false;
    segment->last_use_tick = tick;
    address = segment->address + segment->bytes;
  }
}

std::vector<Segment*> Arena::Impl::segments_overlapping(DevicePtr address, std::size_t bytes) const {
  std::vector<Segment*> out;
  if (bytes == 0 || !va.contains(address)) return out;
  DevicePtr end = std::min(address + bytes, va.base() + va.bytes());
  if (end < address) end = va.base() + va.bytes();
  while (address < end) {
    Segment* segment = segment_at(address);
    if (segment == nullptr) {
      address = (address & ~(granularity - 1)) + granularity;
      continue;
    }
    out.push_back(segment);
    address = segment->address + segment->bytes;
  }
  return out;
}

std::size_t Arena::pin(const void* ptr, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  std::vector<Segment*> overlapping =
      impl_->segments_overlapping(reinterpret_cast<DevicePtr>(ptr), bytes);
  std::vector<Segment*> offloaded;
  for (Segment* s : overlapping)
    if (!s->resident()) offloaded.push_back(s);
  impl_->restore_segments(std::move(offloaded));  // throws before any pin is taken
  std::size_t pinned = 0;
  for (Segment* s : overlapping) {
    if (s->pins++ == 0) impl_->stats.export_pinned_bytes += s->bytes;
    pinned += s->bytes;
  }
  impl_->update_peaks();
  return pinned;
}

void Arena::unpin(const void* ptr, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  std::vector<Segment*> overlapping =
      impl_->segments_overlapping(reinterpret_cast<DevicePtr>(ptr), bytes);
  for (Segment* s : overlapping) {
    if (!s->pinned())
      throw std::logic_error("Arena::unpin(" + std::to_string(reinterpret_cast<DevicePtr>(ptr)) +
                             ", " + std::to_string(bytes) + ") on device " +
                             std::to_string(impl_->device) + ": the segment at " +
                             std::to_string(s->address) + " has no pin (unpin without pin)");
  }
  const std::uint64_t tick = ++impl_->tick;
  for (Segment* s : overlapping) {
    if (--s->pins == 0) impl_->stats.export_pinned_bytes -= s->bytes;
    s->backup_current = false;  // written through the export, as far as the arena knows
    s->last_use_tick = tick;
  }
}

void Arena::mark_all_written() {
  std::size_t bytes = 0;
  const void* base = nullptr;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    base = reinterpret_cast<const void*>(impl_->va.base());
    bytes = impl_->va.bytes();
  }
  mark_written(base, bytes);
}

void Arena::before_fork() { impl_->mutex.lock(); }

void Arena::after_fork_in_parent() { impl_->mutex.unlock(); }

void Arena::after_fork_in_child() {
  // The lock taken by before_fork() is held by this, the only thread.
  try {
    for (const auto& s : impl_->segments) {
      impl_->driver.detach_after_fork(s->address, s->bytes,
                                      s->resident() ? nullptr : s->backup.data());
    }
  } catch (...) {
    impl_->mutex.unlock();
    throw;
  }
  impl_->mutex.unlock();
}

OffloadResult Arena::offload(std::size_t budget_bytes) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->offload(budget_bytes);
}

std::size_t Arena::restore_all() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  std::vector<Segment*> wanted;
  for (const auto& s : impl_->segments)
    if (!s->resident()) wanted.push_back(s.get());
  return impl_->restore_segments(std::move(wanted));
}

std::size_t Arena::restore(const void* ptr, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto address = reinterpret_cast<DevicePtr>(ptr);
  std::vector<Segment*> wanted;
  for (const auto& s : impl_->segments) {
    if (s->resident()) continue;
    bool overlaps =
        s->address < address + std::max<std::size_t>(bytes, 1) && address < s->address + s->bytes;
    if (overlaps) wanted.push_back(s.get());
  }
  return impl_->restore_segments(std::move(wanted));
}

}  // namespace acb::alloc
