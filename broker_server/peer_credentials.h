// Peer credentials of a loopback TCP connection: the uid that owns the
// client's socket.
//
// TCP has no SO_PEERCRED (that is for Unix sockets), but on loopback both
// ends live in this kernel, and the kernel's socket diagnostics
// (NETLINK_SOCK_DIAG, what `ss -e` uses) can look up the peer's socket by
// its exact 4-tuple and report the uid that created it. Unprivileged
// processes may ask. One netlink round trip per accepted connection, bounded
// by a short receive timeout.
//
// A peer that is not on this host, or a lookup that fails (a kernel without
// inet_diag, the peer already gone), gives nullopt: the caller treats it as
// an unknown user, never as any particular uid.
//
// Thread-safety: pure functions; each call opens its own netlink socket.
#pragma once

#include <cstdint>
#include <optional>

#include <boost/asio/ip/tcp.hpp>

namespace acb::broker {

/// The uid owning the peer's socket of a connection from `remote` to `local`,
/// when the peer is on this host; nullopt otherwise.
std::optional<std::uint32_t> loopback_peer_uid(const boost::asio::ip::tcp::endpoint& local,
                                               const boost::asio::ip::tcp::endpoint& remote);

/// The same for an accepted socket; for a Unix socket (a socketpair given to
/// Server::adopt), its SO_PEERCRED uid.
std::optional<std::uint32_t> loopback_peer_uid(boost::asio::ip::tcp::socket& socket);

}  // namespace acb::broker
