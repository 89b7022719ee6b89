// BrokerProcess: the real acb-broker started for a test, on an ephemeral port
// with a private token directory; stopped with SIGTERM when destroyed.
//
// The constructor waits (bounded) for the "acb-broker listening on" line and
// sets ACB_TOKEN_DIR in this process too, so BrokerClient reads the tokens
// the broker created.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace acb::test {

class BrokerProcess {
 public:
  BrokerProcess(const std::string& binary, const std::vector<std::string>& flags);
  ~BrokerProcess();
  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;

  std::uint16_t port() const { return port_; }

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  std::string token_dir_;
};

}  // namespace acb::test
