#include "broker_server/metrics_http.h"

#include <memory>
#include <utility>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace acb::broker {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

// One HTTP exchange: read a request, write the response, close.
class HttpExchange : public std::enable_shared_from_this<HttpExchange> {
 public:
  HttpExchange(asio::ip::tcp::socket socket, const std::function<std::string()>& render)
      : stream_(std::move(socket)), render_(render) {}

  void start() {
    stream_.expires_after(MetricsHttp::kRequestTimeout);
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_read(ec); });
  }

 private:
  void on_read(const error_code& ec) {
    if (ec) return;  // timeout, reset or garbage: nothing to answer
    response_.version(request_.version());
    response_.keep_alive(false);
    response_.set(http::field::server, "acb-broker");
    if (request_.method() != http::verb::get && request_.method() != http::verb::head) {
      response_.result(http::status::method_not_allowed);
      response_.set(http::field::allow, "GET, HEAD");
      response_.set(http::field::content_type, "text/plain");
      response_.body() = "only GET is supported\n";
    } else if (request_.target() != "/metrics") {
      response_.result(http::status::not_found);
      response_.set(http::field::content_type, "text/plain");
      response_.body() = "not found; the metrics are at /metrics\n";
    } else {
      response_.result(http::status::ok);
      response_.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      response_.body() = render_();
    }
    response_.prepare_payload();
    if (request_.method() == http::verb::head) response_.body().clear();
    http::async_write(stream_, response_, [self = shared_from_this()](const error_code&, std::size_t) {
      error_code ignored;
      self->stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    });
  }

  beast::tcp_stream stream_;
  const std::function<std::string()>& render_;
  beast::flat_buffer buffer_{8192};
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
};

}  // namespace

MetricsHttp::MetricsHttp(asio::io_context& io, std::function<std::string()> render)
    : acceptor_(io), render_(std::move(render)) {}

void MetricsHttp::start(const asio::ip::tcp::endpoint& endpoint) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen();
  do_accept();
}

void MetricsHttp::close() {
  error_code ignored;
  acceptor_.close(ignored);
}

std::uint16_t MetricsHttp::port() const {
  error_code ec;
  const auto endpoint = acceptor_.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

void MetricsHttp::do_accept() {
  acceptor_.async_accept([this](const error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) std::make_shared<HttpExchange>(std::move(socket), render_)->start();
    do_accept();
  });
}

}  // namespace acb::broker
