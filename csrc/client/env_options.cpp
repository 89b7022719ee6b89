#include "client/env_options.h"

#include <stdexcept>

#include "common/options.h"

namespace acb::client {

std::pair<std::string, std::uint16_t> parse_broker_address(const std::string& text) {
  const auto colon = text.rfind(':');
  const std::string port_text = colon == std::string::npos ? std::string() : text.substr(colon + 1);
  std::string host = colon == std::string::npos ? std::string() : text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned long port = 0;
  std::size_t used = 0;
  try {
    port = std::stoul(port_text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (host.empty() || port_text.empty() || used != port_text.size() || port == 0 || port > 65535) {
    throw std::invalid_argument("acb broker address '" + text + "' is not HOST:PORT (e.g. 127.0.0.1:43210)");
  }
  return {host, static_cast<std::uint16_t>(port)};
}

ClientOptions client_options_from_env(const std::string& fallback_name) {
  ClientOptions o;
  try {
    std::tie(o.host, o.port) = parse_broker_address(options::value("broker"));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("ACB_BROKER: ") + e.what());
  }
  o.token = options::value("token");
  o.name = options::value("name");
  if (o.name.empty()) o.name = fallback_name;
  o.priority = options::value("priority");
  if (o.priority != "inference" && o.priority != "training" && o.priority != "batch") {
    throw std::invalid_argument("ACB_PRIORITY='" + o.priority + "' is not inference, training or batch");
  }
  o.device = static_cast<int>(options::int_value("device"));
  const auto need = options::int_value("need_bytes");
  if (need < 0) throw std::invalid_argument("ACB_NEED_BYTES='" + options::value("need_bytes") + "' is negative");
  o.need_bytes = static_cast<std::uint64_t>(need);
  const auto timeout_ms = options::int_value("connect_timeout_ms");
  if (timeout_ms <= 0) {
    throw std::invalid_argument("ACB_CONNECT_TIMEOUT_MS='" + options::value("connect_timeout_ms") +
                                "' must be positive");
  }
  o.connect_timeout = std::chrono::milliseconds(timeout_ms);
  return o;
}

}  // namespace acb::client
