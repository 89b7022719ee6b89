#include "broker_server/event_loop.h"

namespace acb::broker {

void run_event_loop(boost::asio::io_context& io, std::chrono::microseconds busy_poll) {
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

}  // namespace acb::broker
