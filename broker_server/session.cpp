#include "broker_server/session.h"

#include <cstdio>
#include <utility>

#include <boost/asio/write.hpp>

namespace acb::broker {

namespace asio = boost::asio;
using boost::system::error_code;

Session::Session(asio::ip::tcp::socket socket, SessionHost& host, ClientId id)
    : socket_(std::move(socket)), linger_timer_(socket_.get_executor()), host_(host), id_(id) {}

void Session::start() {
  error_code ec;
  const auto endpoint = socket_.remote_endpoint(ec);
  peer_ = ec ? std::string("unknown peer") : endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
  // Grants are tiny frames on the critical path: never wait for Nagle.
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  do_read();
}

void Session::do_read() {
  if (closed_) return;
  socket_.async_read_some(asio::buffer(read_buffer_),
                          [self = shared_from_this()](const error_code& ec, std::size_t bytes) {
                            self->on_read(ec, bytes);
                          });
}

void Session::on_read(const error_code& ec, std::size_t bytes) {
  if (ec) {
    // EOF, reset, or our own close: the connection is over either way.
    close();
    return;
  }
  if (closing_) {  // lingering after an error: discard until the peer closes
    do_read();
    return;
  }
  parser_.feed(read_buffer_.data(), bytes);
  try {
    while (!closing_ && !closed_) {
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
    return;
  }
  do_read();
}

void Session::send_frame(std::string frame) {
  if (closing_ || closed_) return;
  if (queued_bytes_ + frame.size() > kMaxQueuedBytes) {
    std::fprintf(stderr, "acb-broker: closing %s (client %llu): it does not read, %zu bytes queued\n",
                 peer_.c_str(), static_cast<unsigned long long>(id_), queued_bytes_);
    close();
    return;
  }
  queued_bytes_ += frame.size();
  write_queue_.push_back(std::move(frame));
  if (write_queue_.size() == 1) do_write();
}

void Session::close_after_error(std::string error_frame) {
  if (closing_ || closed_) return;
  closing_ = true;
  finish();
  queued_bytes_ += error_frame.size();
  write_queue_.push_back(std::move(error_frame));
  if (write_queue_.size() == 1) do_write();
}

void Session::do_write() {
  asio::async_write(socket_, asio::buffer(write_queue_.front()),
                    [self = shared_from_this()](const error_code& ec, std::size_t bytes) {
                      self->on_write(ec, bytes);
                    });
}

void Session::on_write(const error_code& ec, std::size_t bytes) {
  if (ec) {
    close();
    return;
  }
  queued_bytes_ -= write_queue_.front().size();
  write_queue_.pop_front();
  if (closed_) return;
  if (!write_queue_.empty()) {
    do_write();
  } else if (closing_) {
    linger();
  }
}

void Session::linger() {
  error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  linger_timer_.expires_after(std::chrono::milliseconds(kLingerMs));
  linger_timer_.async_wait([self = shared_from_this()](const error_code& ec) {
    if (!ec) self->close_socket();
  });
}

void Session::close() {
  finish();
  close_socket();
}

void Session::close_socket() {
  if (closed_) return;
  closed_ = true;
  error_code ignored;
  linger_timer_.cancel();
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

void Session::finish() {
  if (finished_) return;
  finished_ = true;
  host_.on_session_closed(*this);
}

}  // namespace acb::broker
