// EventPool: device events created once and reused (creating an event is a
// driver call; stream-ordered reuse needs one per cross-stream hand-over).
// Destroys every event it created when it is destroyed.
//
// Not thread-safe: used under the arena's mutex.
#pragma once

#include <vector>

#include "alloc/driver.h"

namespace acb::alloc {

class EventPool {
 public:
  EventPool(Driver& driver, int device) : driver_(driver), device_(device) {}
  ~EventPool() {
    for (EventHandle event : all_) {
      try {
        driver_.destroy_event(event);
      } catch (...) {
      }
    }
  }
  EventPool(const EventPool&) = delete;
  EventPool& operator=(const EventPool&) = delete;

  /// An event recorded now at the end of `stream`.
  EventHandle record(StreamHandle stream) {
    EventHandle event = nullptr;
    if (free_.empty()) {
      all_.reserve(all_.size() + 1);
      free_.reserve(all_.size() + 1);
      event = driver_.create_event(device_);
      all_.push_back(event);
    } else {
      event = free_.back();
      free_.pop_back();
    }
    try {
      driver_.record_event(event, stream);
    } catch (...) {
      free_.push_back(event);
      throw;
    }
    return event;
  }
  /// Returns an event that is no longer waited on.
  void recycle(EventHandle event) { free_.push_back(event); }

 private:
  Driver& driver_;
  int device_;
  std::vector<EventHandle> all_;
  std::vector<EventHandle> free_;
};

}  // namespace acb::alloc
