// CopyEngine: chunked, overlapped copies between device memory and pinned
// host backups on one copy stream (created on first use, kept for the
// arena's life).
//
// Copies are packed into chunks of at most `chunk_bytes`: a large range is
// cut, small ranges share a chunk, and each chunk goes to the driver as one
// batch (Driver::copy_batch_async: one cuMemcpyBatchAsync on CUDA where
// libcuda has it), so many small blocks cost a few driver calls, not one
// each. Up to `chunks_in_flight` chunks are enqueued ahead, each followed by
// an event from a fixed ring, and the engine waits on the oldest event before
// reusing its slot. So a large offload keeps the copy queue full without an
// unbounded queue, and finish() is the only full synchronisation.
//
// Not thread-safe: used under the arena's mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "alloc/driver.h"

namespace acb::alloc {

class CopyEngine {
 public:
  CopyEngine(Driver& driver, int device, std::size_t chunk_bytes, int chunks_in_flight);
  ~CopyEngine();
  CopyEngine(const CopyEngine&) = delete;
  CopyEngine& operator=(const CopyEngine&) = delete;

  /// Enqueues device -> host.
  void to_host(void* dst, DevicePtr src, std::size_t bytes);
  /// Enqueues host -> device.
  void to_device(DevicePtr dst, const void* src, std::size_t bytes);
  /// Enqueues the copies of `ranges` (which must not overlap) in `direction`;
  /// the last chunk of a call is handed over at its end, not held for the next.
  void copy(const std::vector<CopyRange>& ranges, CopyDirection direction);
  /// Waits until every enqueued copy is done.
  void finish();

  /// Ranges handed to the driver so far (after cutting at chunk boundaries).
  std::uint64_t ranges_enqueued() const { return ranges_enqueued_; }
  /// Batches (chunks) handed to the driver so far.
  std::uint64_t batches_enqueued() const { return enqueued_; }
 private:
  void ensure_started();
  void wait_for_slot();
  void flush(CopyDirection direction);

  Driver& driver_;
  int device_;
  std::size_t chunk_bytes_;
  std::size_t ring_size_;
  StreamHandle stream_ = nullptr;
  std::vector<EventHandle> ring_;
  // Chunk n uses ring slot n % ring_size_; chunks below completed_ are done.
  std::uint64_t enqueued_ = 0;
  std::uint64_t completed_ = 0;
  std::uint64_t ranges_enqueued_ = 0;
  // The chunk being packed, and its bytes.
  std::vector<CopyRange> batch_;
  std::size_t batch_bytes_ = 0;
};

}  // namespace acb::alloc
