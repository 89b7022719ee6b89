// loopback_peer_uid against real loopback connections: our own uid, another
// uid (a forked child that drops to nobody, when we may), and a 4-tuple that
// matches no socket.
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>

#include "acb_catch.hpp"
#include "broker_server/peer_credentials.h"

namespace asio = boost::asio;
using asio::ip::tcp;
using acb::broker::loopback_peer_uid;

namespace {

constexpr std::uint32_t kNobody = 65534;

tcp::acceptor loopback_listener(asio::io_context& io) {
  return tcp::acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
}

}  // namespace

TEST_CASE("the peer of a loopback connection is this process's uid") {
  asio::io_context io;
  auto acceptor = loopback_listener(io);
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  tcp::socket accepted = acceptor.accept();
  const auto uid = loopback_peer_uid(accepted);
  REQUIRE(uid.has_value());
  CHECK(*uid == ::getuid());
}

TEST_CASE("the peer of a loopback connection from another uid is that uid") {
  if (::geteuid() != 0) {
    WARN("not root: cannot start a client as another uid; skipped");
    return;
  }
  asio::io_context io;
  auto acceptor = loopback_listener(io);
  const auto port = acceptor.local_endpoint().port();
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Only async-signal-safe-ish work: a plain socket as nobody, kept open until the parent reads.
    ::close(ready[1]);
    if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) ::_exit(3);
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) ::_exit(4);
    char byte = 0;
    (void)!::read(ready[0], &byte, 1);  // until the parent has looked
    ::_exit(0);
  }
  ::close(ready[0]);
  // Bounded: a child that failed to connect must fail the test, not hang it.
  pollfd listening{acceptor.native_handle(), POLLIN, 0};
  REQUIRE(::poll(&listening, 1, 5000) == 1);
  tcp::socket accepted = acceptor.accept();
  const auto uid = loopback_peer_uid(accepted);
  ::close(ready[1]);
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(uid.has_value());
  CHECK(*uid == kNobody);
}

TEST_CASE("a 4-tuple that matches no socket has no uid") {
  asio::io_context io;
  auto acceptor = loopback_listener(io);
  const tcp::endpoint nobody_there(asio::ip::make_address("127.0.0.1"), 1);
  CHECK_FALSE(loopback_peer_uid(acceptor.local_endpoint(), nobody_there).has_value());
}
