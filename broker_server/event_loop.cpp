#include "broker_server/event_loop.h"

#include <cstdio>

namespace acb::broker {

namespace {

void run_loop(boost::asio::io_context& io, std::chrono::microseconds busy_poll) {
  if (busy_poll.count() <= 0) {
    io.run();
    return;
  }
  using clock = std::chrono::steady_clock;
  clock::time_point last_event = clock::now();
  while (!io.stopped()) {
    if (io.poll() > 0) {
      last_event = clock::now();
      continue;
    }
    if (io.stopped()) break;  // poll() stops the context when no work is left
    if (clock::now() - last_event < busy_poll) continue;
    if (io.run_one() == 0) break;  // blocks until the next event
    last_event = clock::now();
  }
}

}  // namespace

void run_event_loop(boost::asio::io_context& io, std::chrono::microseconds busy_poll) {
  // Last resort: a handler that throws unwinds out of run()/poll(); Asio
  // allows running the context again, and the other connections' handlers
  // are still queued. The server's own boundaries should make this unreachable.
  for (;;) {
    try {
      run_loop(io, busy_poll);
      return;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "acb-broker: an event handler failed: %s; going on\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "acb-broker: an event handler failed with an unknown exception; going on\n");
    }
  }
}

}  // namespace acb::broker
