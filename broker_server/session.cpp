#include "broker_server/session.h"

#include <cstdio>
#include <utility>

#include <boost/asio/write.hpp>

namespace acb::broker {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

std::string peer_name(const asio::ip::tcp::socket& socket) {
  error_code ec;
  const auto endpoint = socket.remote_endpoint(ec);
  return ec ? std::string("unknown peer") : endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

}  // namespace

Session::Session(asio::ip::tcp::socket socket, SessionHost& host, ClientId id, OutputBudget& budget)
    : socket_(std::move(socket)),
      linger_timer_(socket_.get_executor()),
      throttle_timer_(socket_.get_executor()),
      host_(host),
      id_(id),
      parser_(wire::kMaxUnauthenticatedFrameBytes),
      budget_(budget) {}

void Session::start() {
  peer_ = peer_name(socket_);
  error_code ec;
  // Grants are tiny frames on the critical path: never wait for Nagle.
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  do_read();
}

void Session::do_read() {
  if (closed_ || read_in_progress_) return;
  read_in_progress_ = true;
  socket_.async_read_some(asio::buffer(read_buffer_),
                          [self = shared_from_this()](const error_code& ec, std::size_t bytes) {
                            self->on_read(ec, bytes);
                          });
}

void Session::on_read(const error_code& ec, std::size_t bytes) {
  read_in_progress_ = false;
  if (ec) {
    // EOF, reset, or our own close: the connection is over either way.
    close();
    return;
  }
  if (closing_) {  // lingering after an error: discard until the peer closes
    discarded_bytes_ += bytes;
    if (discarded_bytes_ > kMaxLingerDiscardBytes) {
      close_socket();
      return;
    }
    do_read();
    return;
  }
  parser_.feed(read_buffer_.data(), bytes);
  handle_frames();
  if (!read_paused_ && !throttled_) do_read();
}

void Session::handle_frames() {
  try {
    while (!closing_ && !closed_) {
      if (queued_bytes_ > kReadPauseBytes) {
        // Backpressure: the rest waits in parser_ until the peer reads (on_write).
        read_paused_ = true;
        return;
      }
      const bool after_waiting = std::exchange(just_waited_, false);
      if (const auto wait_us = host_.frame_wait_us(*this, after_waiting); wait_us > 0) {
        throttle(wait_us);  // the rest waits in parser_, and nothing more is read
        return;
      }
      const auto result = parser_.next(payload_);
      if (result == wire::FrameParser::Result::incomplete) break;
      if (result == wire::FrameParser::Result::bad) {
        host_.on_framing_error(*this, parser_.error());
        break;
      }
      host_.on_frame(*this, payload_);
    }
  } catch (const std::exception& e) {
    // The host has its own boundary; this one keeps a slip there to this connection.
    std::fprintf(stderr, "acb-broker: closing %s (client %llu): %s\n", peer_.c_str(),
                 static_cast<unsigned long long>(id_), e.what());
    close();
  }
  read_paused_ = false;
}

void Session::throttle(std::uint64_t wait_us) {
  throttled_ = true;
  throttle_timer_.expires_after(std::chrono::microseconds(wait_us));
  throttle_timer_.async_wait([self = shared_from_this()](const error_code& ec) {
    self->host_.frame_waited(*self);  // also when cancelled: the host counts waiters
    if (ec || self->closed_ || self->closing_) return;
    self->throttled_ = false;
    self->just_waited_ = true;
    self->handle_frames();
    if (!self->read_paused_ && !self->throttled_ && !self->closing_) self->do_read();
  });
}

void Session::send_frame(std::string frame) {
  if (closing_ || closed_) return;
  if (queued_bytes_ + frame.size() > kMaxQueuedBytes) {
    std::fprintf(stderr, "acb-broker: closing %s (client %llu): it does not read, %zu bytes queued (limit %zu)\n",
                 peer_.c_str(), static_cast<unsigned long long>(id_), queued_bytes_, kMaxQueuedBytes);
    close();
    return;
  }
  enqueue(std::move(frame));
  if (budget_.over()) host_.on_output_over_budget(*this);
}

void Session::close_after_error(std::string error_frame) {
  if (closing_ || closed_) return;
  closing_ = true;
  finish();
  enqueue(std::move(error_frame));
  // A peer that does not read would never let the queue flush: kLingerMs bounds that wait too.
  arm_linger_timer();
}

void Session::enqueue(std::string frame) {
  queued_bytes_ += frame.size();
  budget_.queued_bytes += frame.size();
  queued_.push_back(std::move(frame));
  if (!write_in_progress_) do_write();
}

void Session::do_write() {
  // Everything queued goes out in one gather write; what is queued meanwhile
  // waits for the next one, so the frames keep their order.
  write_in_progress_ = true;
  writing_.swap(queued_);
  write_buffers_.clear();
  for (const auto& frame : writing_) write_buffers_.push_back(asio::buffer(frame));
  asio::async_write(socket_, write_buffers_, [self = shared_from_this()](const error_code& ec, std::size_t bytes) {
    self->on_write(ec, bytes);
  });
}

void Session::on_write(const error_code& ec, std::size_t bytes) {
  write_in_progress_ = false;
  if (closed_) return;  // close_socket() already gave the bytes back to the budget
  if (ec) {
    close();
    return;
  }
  queued_bytes_ -= bytes;
  budget_.queued_bytes -= bytes;
  writing_.clear();
  if (!queued_.empty()) {
    do_write();
  } else if (closing_) {
    linger();
    return;
  }
  if (read_paused_ && !throttled_ && queued_bytes_ < kReadResumeBytes) {
    handle_frames();  // the frames left waiting, then more input
    if (!read_paused_ && !throttled_ && !closing_) do_read();
  }
}

void Session::linger() {
  do_read();  // discard input (a read paused by backpressure restarts here)
  error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  arm_linger_timer();
}

void Session::arm_linger_timer() {
  linger_timer_.expires_after(std::chrono::milliseconds(kLingerMs));
  linger_timer_.async_wait([self = shared_from_this()](const error_code& ec) {
    if (!ec) self->close_socket();
  });
}

void Session::refuse(const std::string& error_frame) {
  peer_ = peer_name(socket_);
  error_code ec;
  socket_.non_blocking(true, ec);
  // A fresh socket's send buffer holds a small frame: one try, never a wait.
  if (!ec) socket_.write_some(asio::buffer(error_frame), ec);
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  finished_ = true;  // never started, so the host has nothing to hear
  close_socket();
}

void Session::close() {
  finish();
  close_socket();
}

void Session::close_socket() {
  if (closed_) return;
  closed_ = true;
  budget_.queued_bytes -= queued_bytes_;  // unsent frames are dropped
  queued_bytes_ = 0;
  error_code ignored;
  linger_timer_.cancel();
  throttle_timer_.cancel();
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

void Session::finish() {
  if (finished_) return;
  finished_ = true;
  host_.on_session_closed(*this);
}

}  // namespace acb::broker
