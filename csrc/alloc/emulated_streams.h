// Streams and events of the emulated device.
//
// Work on the emulated device is a host memcpy done at the moment it is
// enqueued, so streams are normally always idle and every event is done as
// soon as it is recorded. To let tests exercise stream-ordered logic (reuse
// of a block only after its stream passed an event), a stream can be paused,
// as if it were running a long kernel: events recorded on it from then on are
// not done, work enqueued on it is queued, and resume() runs the queue in
// order and completes those events.
//
// Waiting on a paused stream (synchronize, synchronize_device,
// synchronize_event) blocks until another thread resumes it, and throws
// DriverError (ETIMEDOUT) after wait_timeout instead of deadlocking a test.
//
// The null stream (the legacy default stream) is one shared stream; it does
// not wait for other streams (nothing ever runs concurrently here), and it
// can be paused like any other.
//
// Thread-safety: all methods are thread-safe. Work on a running stream runs
// in the enqueuing thread without the streams' mutex; queued work runs at
// resume with it held, so work must not call back into EmulatedStreams.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "alloc/driver.h"

namespace acb::alloc {

class EmulatedStreams {
 public:
  EmulatedStreams();
  ~EmulatedStreams();
  EmulatedStreams(const EmulatedStreams&) = delete;
  EmulatedStreams& operator=(const EmulatedStreams&) = delete;

  StreamHandle create_stream(int device);
  /// Runs whatever is still queued on the stream (as CUDA completes the work
  /// of a destroyed stream), then forgets it.
  void destroy_stream(StreamHandle stream);
  /// Runs `work` now, or queues it when the stream is paused.
  void enqueue(StreamHandle stream, std::function<void()> work);
  void synchronize_stream(StreamHandle stream);
  /// Waits for every stream of `device` (and the null stream).
  void synchronize_device(int device);

  EventHandle create_event(int device);
  void destroy_event(EventHandle event);
  void record_event(EventHandle event, StreamHandle stream);
  bool event_done(EventHandle event);
  void synchronize_event(EventHandle event);

  /// Holds the stream busy until resume_stream: later work queues up and
  /// events recorded from now on are not done. Pausing a paused stream is a no-op.
  void pause_stream(StreamHandle stream);
  /// Runs the queued work in order and lets later work run at once. Throws
  /// the first DriverError a queued copy raised (the rest still ran).
  void resume_stream(StreamHandle stream);
  /// How long a wait on a paused stream lasts before it throws (default 10 s).
  void set_wait_timeout(std::chrono::milliseconds timeout);

 private:
  struct Stream {
    int device = 0;
    bool paused = false;
    std::deque<std::function<void()>> queued;
    std::uint64_t enqueued = 0;   // work items ever enqueued
    std::uint64_t completed = 0;  // work items done (in order)
  };
  struct Event {
    int device = 0;
    std::shared_ptr<Stream> stream;  // null until recorded
    std::uint64_t target = 0;        // done when stream->completed >= target
  };

  Stream& stream_locked(StreamHandle stream, const char* call);
  Event& event_locked(EventHandle event, const char* call);
  void drain_locked(Stream& stream, std::exception_ptr& first_error);
  void wait_locked(std::unique_lock<std::mutex>& lock, const std::function<bool()>& ready,
                   const std::string& call);

  std::mutex mutex_;
  std::condition_variable progressed_;
  std::chrono::milliseconds wait_timeout_{10000};
  std::shared_ptr<Stream> null_stream_;
  std::unordered_map<StreamHandle, std::shared_ptr<Stream>> streams_;
  std::unordered_map<EventHandle, std::unique_ptr<Event>> events_;
};

}  // namespace acb::alloc
