// client_options_from_env: ClientOptions filled from the options table
// (csrc/common/options.json): ACB_BROKER, ACB_NAME, ACB_PRIORITY,
// ACB_DEVICE, ACB_NEED_BYTES, ACB_CONNECT_TIMEOUT_MS, ACB_TOKEN.
//
// So that a process started by `acb run` or with ACB_ENABLE=1 joins the broker
// the same way from C++ as from Python. Throws std::invalid_argument naming
// the variable and its text for a malformed value.
#pragma once

#include <string>
#include <utility>

#include "client/broker_client.h"

namespace acb::client {

/// Splits "host:port". Throws std::invalid_argument naming the text.
std::pair<std::string, std::uint16_t> parse_broker_address(const std::string& text);

/// The options from the environment, defaults from the table; `fallback_name`
/// is used when ACB_NAME is empty.
ClientOptions client_options_from_env(const std::string& fallback_name);

}  // namespace acb::client
