#include "alloc/emulated_streams.h"

#include <cerrno>
#include <sstream>
#include <vector>

namespace acb::alloc {

namespace {

std::string handle_text(const void* handle) {
  std::ostringstream out;
  out << handle;
  return out.str();
}

}  // namespace

EmulatedStreams::EmulatedStreams() : null_stream_(std::make_shared<Stream>()) {}

EmulatedStreams::~EmulatedStreams() = default;

EmulatedStreams::Stream& EmulatedStreams::stream_locked(StreamHandle stream, const char* call) {
  if (stream == nullptr) return *null_stream_;
  auto it = streams_.find(stream);
  if (it == streams_.end())
    throw DriverError(call, EINVAL,
                      std::string("emulated ") + call + "(stream=" + handle_text(stream) +
                          ") failed: unknown stream");
  return *it->second;
}

EmulatedStreams::Event& EmulatedStreams::event_locked(EventHandle event, const char* call) {
  auto it = events_.find(event);
  if (it == events_.end())
    throw DriverError(call, EINVAL,
                      std::string("emulated ") + call + "(event=" + handle_text(event) +
                          ") failed: unknown event");
  return *it->second;
}

void EmulatedStreams::drain_locked(Stream& stream, std::exception_ptr& first_error) {
  while (!stream.queued.empty()) {
    auto work = std::move(stream.queued.front());
    stream.queued.pop_front();
    try {
      work();
    } catch (...) {
      if (!first_error) first_error = std::current_exception();
    }
    ++stream.completed;
  }
  progressed_.notify_all();
}

void EmulatedStreams::wait_locked(std::unique_lock<std::mutex>& lock,
                                  const std::function<bool()>& ready, const std::string& call) {
  if (!progressed_.wait_for(lock, wait_timeout_, ready))
    throw DriverError(call, ETIMEDOUT,
                      "emulated " + call +
                          " failed: a paused stream (pause_stream) was not resumed within " +
                          std::to_string(wait_timeout_.count()) + " ms");
}

StreamHandle EmulatedStreams::create_stream(int device) {
  auto stream = std::make_shared<Stream>();
  stream->device = device;
  std::lock_guard<std::mutex> lock(mutex_);
  StreamHandle handle = stream.get();
  streams_.emplace(handle, std::move(stream));
  return handle;
}

void EmulatedStreams::destroy_stream(StreamHandle stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stream == nullptr)
    throw DriverError(
        "destroy_stream", EINVAL,
        "emulated destroy_stream(stream=0) failed: the null stream cannot be destroyed");
  Stream& state = stream_locked(stream, "destroy_stream");
  std::exception_ptr ignored;  // nobody is left to report a failed copy to
  drain_locked(state, ignored);
  streams_.erase(stream);
}

void EmulatedStreams::enqueue(StreamHandle stream, std::function<void()> work) {
  std::shared_ptr<Stream> keep;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Stream& state = stream_locked(stream, "enqueue");
    ++state.enqueued;
    if (state.paused) {
      state.queued.push_back(std::move(work));
      return;
    }
    keep = stream == nullptr ? null_stream_ : streams_.at(stream);
  }
  // Run outside the lock so copies on different streams (and threads) overlap
  // and event queries are not held up by a long memcpy. Count the work as
  // completed even when it throws: the error goes to the caller.
  struct Complete {
    EmulatedStreams& self;
    Stream& state;
    ~Complete() {
      std::lock_guard<std::mutex> lock(self.mutex_);
      ++state.completed;
      self.progressed_.notify_all();
    }
  } complete{*this, *keep};
  work();
}

void EmulatedStreams::synchronize_stream(StreamHandle stream) {
  std::unique_lock<std::mutex> lock(mutex_);
  Stream& state = stream_locked(stream, "synchronize_stream");
  if (state.completed == state.enqueued) return;
  // Hold the stream alive even if another thread destroys the handle meanwhile.
  std::shared_ptr<Stream> keep = stream == nullptr ? null_stream_ : streams_.at(stream);
  const std::uint64_t target = state.enqueued;
  wait_locked(
      lock, [&] { return keep->completed >= target; },
      "synchronize_stream(stream=" + handle_text(stream) + ")");
}

void EmulatedStreams::synchronize_device(int device) {
  std::unique_lock<std::mutex> lock(mutex_);
  std::vector<std::pair<std::shared_ptr<Stream>, std::uint64_t>> pending;
  if (null_stream_->completed < null_stream_->enqueued)
    pending.emplace_back(null_stream_, null_stream_->enqueued);
  for (auto& [handle, stream] : streams_)
    if (stream->device == device && stream->completed < stream->enqueued)
      pending.emplace_back(stream, stream->enqueued);
  wait_locked(
      lock,
      [&] {
        for (auto& [stream, target] : pending)
          if (stream->completed < target) return false;
        return true;
      },
      "synchronize_device(device=" + std::to_string(device) + ")");
}

EventHandle EmulatedStreams::create_event(int device) {
  auto event = std::make_unique<Event>();
  event->device = device;
  std::lock_guard<std::mutex> lock(mutex_);
  EventHandle handle = event.get();
  events_.emplace(handle, std::move(event));
  return handle;
}

void EmulatedStreams::destroy_event(EventHandle event) {
  std::lock_guard<std::mutex> lock(mutex_);
  event_locked(event, "destroy_event");
  events_.erase(event);
}

void EmulatedStreams::record_event(EventHandle event, StreamHandle stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  Event& state = event_locked(event, "record_event");
  stream_locked(stream, "record_event");
  state.stream = stream == nullptr ? null_stream_ : streams_.at(stream);
  state.target = state.stream->enqueued;
}

bool EmulatedStreams::event_done(EventHandle event) {
  std::lock_guard<std::mutex> lock(mutex_);
  Event& state = event_locked(event, "event_done");
  return state.stream == nullptr || state.stream->completed >= state.target;
}

void EmulatedStreams::synchronize_event(EventHandle event) {
  std::unique_lock<std::mutex> lock(mutex_);
  Event& state = event_locked(event, "synchronize_event");
  if (state.stream == nullptr) return;
  std::shared_ptr<Stream> stream = state.stream;
  const std::uint64_t target = state.target;
  wait_locked(
      lock, [&] { return stream->completed >= target; },
      "synchronize_event(event=" + handle_text(event) + ")");
}

void EmulatedStreams::pause_stream(StreamHandle stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  Stream& state = stream_locked(stream, "pause_stream");
  if (state.paused) return;
  state.paused = true;
  // The pause itself is work on the stream that finishes at resume, so the
  // stream is busy even with nothing else queued: events recorded from now
  // on are not done and synchronizing waits, as behind a long kernel.
  ++state.enqueued;
  state.queued.push_back([] {});
}

void EmulatedStreams::resume_stream(StreamHandle stream) {
  std::exception_ptr first_error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Stream& state = stream_locked(stream, "resume_stream");
    state.paused = false;
    drain_locked(state, first_error);
  }
  if (first_error) std::rethrow_exception(first_error);
}

void EmulatedStreams::set_wait_timeout(std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> lock(mutex_);
  wait_timeout_ = timeout;
}

}  // namespace acb::alloc
