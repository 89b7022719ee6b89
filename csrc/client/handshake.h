// handshake: the client's side of mutual authentication (protocol version 2,
// docs/protocol.md "Authentication and roles"), on the caller's thread before
// the I/O thread starts.
//
//   -> hello {client_nonce}    the token is never sent
//   <- challenge {broker_nonce, broker_proof}
//      broker_proof is checked (constant time) before anything derived from
//      the token leaves this process; a peer that cannot prove it holds the
//      token is not the broker: BrokerError, and nothing it sent is used
//   -> auth {client_proof}
//   <- welcome
//
// All of it within options.connect_timeout. Frames the broker sends after the
// welcome stay in `parser` for the I/O thread.
#pragma once

#include "client/broker_client.h"
#include "client/socket.h"
#include "common/frame.h"

namespace acb::client {

/// Authenticates both ways and returns the welcome. Throws BrokerError (the
/// caller closes the socket).
Welcome handshake(Socket& socket, const ClientOptions& options, wire::FrameParser& parser);

}  // namespace acb::client
