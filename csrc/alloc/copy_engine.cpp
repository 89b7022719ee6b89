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

void CopyEngine::chunk_enqueued() {
  driver_.record_event(ring_[enqueued_ % ring_size_], stream_);
  ++enqueued_;
}

bool CopyEngine::done(std::uint64_t mark) {
  while (completed_ < mark && driver_.event_done(ring_[completed_ % ring_size_])) ++completed_;
  return completed_ >= mark;
}

void CopyEngine::to_host(void* dst, DevicePtr src, std::size_t bytes) {
  ensure_started();
  auto* out = static_cast<std::byte*>(dst);
  for (std::size_t done = 0; done < bytes; done += chunk_bytes_) {
    std::size_t n = std::min(chunk_bytes_, bytes - done);
    wait_for_slot();
    driver_.copy_to_host_async(out + done, src + done, n, stream_);
    chunk_enqueued();
  }
}

void CopyEngine::to_device(DevicePtr dst, const void* src, std::size_t bytes) {
  ensure_started();
  const auto* in = static_cast<const std::byte*>(src);
  for (std::size_t done = 0; done < bytes; done += chunk_bytes_) {
    std::size_t n = std::min(chunk_bytes_, bytes - done);
    wait_for_slot();
    driver_.copy_to_device_async(dst + done, in + done, n, stream_);
    chunk_enqueued();
  }
}

void CopyEngine::finish() {
  if (stream_ == nullptr) return;
  driver_.synchronize_stream(stream_);
  completed_ = enqueued_;
}

}  // namespace acb::alloc
