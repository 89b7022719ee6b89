#include "alloc/copy_engine.h"

#include <algorithm>

namespace acb::alloc {

CopyEngine::CopyEngine(Driver& driver, int device, std::size_t chunk_bytes, int chunks_in_flight)
    : driver_(driver),
      device_(device),
      chunk_bytes_(std::max<std::size_t>(chunk_bytes, 4096)),
      ring_size_(static_cast<std::size_t>(std::max(chunks_in_flight, 1))) {}

CopyEngine::~CopyEngine() {
  try {
    if (stream_ != nullptr) driver_.synchronize_stream(stream_);
  } catch (...) {
  }
  for (EventHandle event : ring_) {
    try {
      driver_.destroy_event(event);
    } catch (...) {
    }
  }
  if (stream_ != nullptr) {
    try {
      driver_.destroy_stream(stream_);
    } catch (...) {
    }
  }
}

void CopyEngine::ensure_started() {
  if (stream_ != nullptr) return;
  ring_.reserve(ring_size_);
  StreamHandle stream = driver_.create_stream(device_);
  try {
    while (ring_.size() < ring_size_) ring_.push_back(driver_.create_event(device_));
  } catch (...) {
    for (EventHandle event : ring_) driver_.destroy_event(event);
    ring_.clear();
    driver_.destroy_stream(stream);
    throw;
  }
  stream_ = stream;
}

void CopyEngine::wait_for_slot() {
  // The slot about to be reused holds the oldest chunk in flight.
  if (enqueued_ - completed_ == ring_size_) {
    driver_.synchronize_event(ring_[completed_ % ring_size_]);
    ++completed_;
  }
}

void CopyEngine::flush(CopyDirection direction) {
  if (batch_.empty()) return;
  try {
    wait_for_slot();
    driver_.copy_batch_async(batch_.data(), batch_.size(), direction, stream_);
  } catch (...) {
    // Dropped: the caller waits in finish() and must not see it retried later.
    batch_.clear();
    batch_bytes_ = 0;
    throw;
  }
  ranges_enqueued_ += batch_.size();
  batch_.clear();
  batch_bytes_ = 0;
  driver_.record_event(ring_[enqueued_ % ring_size_], stream_);
  ++enqueued_;
}

void CopyEngine::copy(const std::vector<CopyRange>& ranges, CopyDirection direction) {
  ensure_started();
  for (const CopyRange& range : ranges) {
    for (std::size_t done = 0; done < range.bytes;) {
      const std::size_t n = std::min(chunk_bytes_ - batch_bytes_, range.bytes - done);
      batch_.push_back({range.device + done, static_cast<std::byte*>(range.host) + done, n});
      batch_bytes_ += n;
      done += n;
      if (batch_bytes_ == chunk_bytes_) flush(direction);
    }
  }
  flush(direction);
}

void CopyEngine::to_host(void* dst, DevicePtr src, std::size_t bytes) {
  copy({{src, dst, bytes}}, CopyDirection::to_host);
}

void CopyEngine::to_device(DevicePtr dst, const void* src, std::size_t bytes) {
  copy({{dst, const_cast<void*>(src), bytes}}, CopyDirection::to_device);
}

void CopyEngine::finish() {
  if (stream_ == nullptr) return;
  driver_.synchronize_stream(stream_);
  completed_ = enqueued_;
}

}  // namespace acb::alloc
