// handshake: hello and welcome, on the caller's thread before the I/O
// thread starts (the I/O thread starts only once the session exists), all
// within options.connect_timeout. Bytes that follow the welcome stay in
// `parser` for the I/O thread.
#pragma once

#include "client/broker_client.h"
#include "client/socket.h"
#include "common/frame.h"

namespace acb::client {

/// Says hello and returns the welcome. Throws BrokerError (the caller closes
/// the socket).
Welcome handshake(Socket& socket, const ClientOptions& options, wire::FrameParser& parser);

}  // namespace acb::client
