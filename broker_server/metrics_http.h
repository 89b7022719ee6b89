// MetricsHttp: the Prometheus endpoint, GET /metrics over HTTP/1.1 (Boost.Beast).
//
// One request per connection: it answers and closes. GET /metrics gets
// `render()` as text/plain; version=0.0.4, other paths 404, other methods
// 405. A peer gets kRequestTimeout to send its request. It shares the
// server's io_context, so render() may read the server's state directly.
//
// Thread-safety: none; runs on the server's io_context thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace acb::broker {

class MetricsHttp {
 public:
  static constexpr std::chrono::seconds kRequestTimeout{5};

  MetricsHttp(boost::asio::io_context& io, std::function<std::string()> render);

  /// Binds and starts accepting. Throws boost::system::system_error.
  void start(const boost::asio::ip::tcp::endpoint& endpoint);
  void close();
  std::uint16_t port() const;

 private:
  void do_accept();

  boost::asio::ip::tcp::acceptor acceptor_;
  std::function<std::string()> render_;
};

}  // namespace acb::broker
