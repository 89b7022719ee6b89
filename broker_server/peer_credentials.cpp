#include "broker_server/peer_credentials.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "broker_server/unique_fd.h"

namespace acb::broker {
namespace {

namespace ip = boost::asio::ip;

// How long the kernel may take to answer; it answers in microseconds, this
// only bounds a misbehaving kernel module.
constexpr int kReplyTimeoutMs = 100;

// An IPv4 client of a dual-stack listener shows up as ::ffff:a.b.c.d; its own
// socket is AF_INET, so ask about the IPv4 addresses.
ip::address plain(const ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return ip::make_address_v4(ip::v4_mapped, address.to_v6());
  }
  return address;
}

void put_address(const ip::address& address, __be32 (&out)[4]) {
  std::memset(out, 0, sizeof(out));
  if (address.is_v4()) {
    const auto bytes = address.to_v4().to_bytes();
    std::memcpy(out, bytes.data(), bytes.size());
  } else {
    const auto bytes = address.to_v6().to_bytes();
    std::memcpy(out, bytes.data(), bytes.size());
  }
}

}  // namespace

std::optional<std::uint32_t> loopback_peer_uid(const ip::tcp::endpoint& local, const ip::tcp::endpoint& remote) {
  const ip::address peer_address = plain(remote.address());
  const ip::address our_address = plain(local.address());
  if (peer_address.is_v4() != our_address.is_v4()) return std::nullopt;

  const UniqueFd fd(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (fd.get() < 0) return std::nullopt;
  const timeval timeout{0, kReplyTimeoutMs * 1000};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));

  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof(message);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;  // no NLM_F_DUMP: an exact lookup by 4-tuple
  message.request.sdiag_family = peer_address.is_v4() ? AF_INET : AF_INET6;
  message.request.sdiag_protocol = IPPROTO_TCP;
  message.request.idiag_states = ~0u;
  // The peer's socket: its source is the remote end of ours.
  message.request.id.idiag_sport = htons(remote.port());
  message.request.id.idiag_dport = htons(local.port());
  put_address(peer_address, message.request.id.idiag_src);
  put_address(our_address, message.request.id.idiag_dst);
  message.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  message.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd.get(), &message, sizeof(message), 0, reinterpret_cast<const sockaddr*>(&kernel),
               sizeof(kernel)) != static_cast<ssize_t>(sizeof(message))) {
    return std::nullopt;
  }
  alignas(nlmsghdr) std::array<char, 8192> reply{};
  const ssize_t n = ::recv(fd.get(), reply.data(), reply.size(), 0);
  if (n <= 0) return std::nullopt;
  auto size = static_cast<unsigned>(n);
  for (auto* h = reinterpret_cast<nlmsghdr*>(reply.data()); NLMSG_OK(h, size); h = NLMSG_NEXT(h, size)) {
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) return std::nullopt;  // NLMSG_ERROR: no such socket here
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) return std::nullopt;
    const auto* diag = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
    if (diag->id.idiag_sport != message.request.id.idiag_sport ||
        diag->id.idiag_dport != message.request.id.idiag_dport) {
      continue;
    }
    return diag->idiag_uid;
  }
  return std::nullopt;
}

std::optional<std::uint32_t> loopback_peer_uid(ip::tcp::socket& socket) {  // native_handle() is not const
  // A Unix socket handed to the server (Server::adopt: one end of a socketpair)
  // has real peer credentials.
  sockaddr_storage own{};
  socklen_t own_size = sizeof(own);
  if (::getsockname(socket.native_handle(), reinterpret_cast<sockaddr*>(&own), &own_size) == 0 &&
      own.ss_family == AF_UNIX) {
    ucred credentials{};
    socklen_t size = sizeof(credentials);
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) return std::nullopt;
    return static_cast<std::uint32_t>(credentials.uid);
  }
  boost::system::error_code ec;
  const auto local = socket.local_endpoint(ec);
  if (ec) return std::nullopt;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) return std::nullopt;
  return loopback_peer_uid(local, remote);
}

}  // namespace acb::broker
