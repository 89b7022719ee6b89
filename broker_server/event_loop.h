// run_event_loop: the broker's io_context loop with bounded busy-polling.
//
// After handling an event the loop keeps polling for `busy_poll_us` before it
// blocks. A blocked thread lets its CPU go idle, and on a virtual machine
// waking a halted virtual CPU costs tens of microseconds, which would
// dominate the grant round trip (a request and its answer are usually
// microseconds apart). The cost is bounded: at most busy_poll_us of CPU per
// burst of events, nothing while the broker is idle. Idle means blocked in
// run_one(): the server's one timer is armed for the next thing due
// (Arbiter::next_wakeup, and housekeeping while a connection has not
// authenticated: server.h), never for a fixed period, so with nothing due
// only I/O (a frame, a connection, a metrics request) or a signal wakes it.
//
// It is also the last-resort boundary of the broker: an exception that
// escapes a handler is logged (one line) and the loop goes on.
//
// Thread-safety: call from the one thread that runs the io_context.
#pragma once

#include <chrono>
#include <cstdint>

#include <boost/asio/io_context.hpp>

namespace acb::broker {

/// Runs `io` until it is stopped or out of work, like io.run(). An exception
/// out of a handler is logged and the loop goes on: it never ends the process.
void run_event_loop(boost::asio::io_context& io, std::chrono::microseconds busy_poll);

}  // namespace acb::broker
