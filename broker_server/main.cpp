// acb-broker: the broker executable. Flags and configuration: config.h and
// docs/operations.md. Prints one line to stdout once it listens
// ("acb-broker listening on HOST:PORT metrics HOST:MPORT"), logs to stderr.
// SIGINT/SIGTERM stop it cleanly (exit 0); SIGHUP reloads the --config file.
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <nlohmann/json.hpp>

#include "broker_server/config.h"
#include "broker_server/device_probe.h"
#include "broker_server/event_loop.h"
#include "broker_server/server.h"
#include "common/private_files.h"
#include "common/token.h"

namespace {

using acb::broker::BrokerConfig;

// A broker serves one connection per process on the node: lift the soft
// descriptor limit to the hard one so a thousand clients fit.
void raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// Written to a new file with an unpredictable name and renamed into place
// (private_files.h), so a reader never sees half of it and nothing planted at
// a predictable name redirects the write. Not secret: readable by all.
void write_port_file(const std::string& path, const BrokerConfig& config, std::uint16_t port,
                     std::uint16_t metrics_port) {
  const nlohmann::json info = {
      {"host", config.host}, {"port", port}, {"metrics_port", metrics_port}, {"pid", static_cast<int>(getpid())}};
  acb::files::publish_file(path, info.dump() + "\n", acb::files::Access::world_read, acb::files::Publish::replace,
                           {"port file", "choose another --port-file"});
}

void wait_for_signal(boost::asio::signal_set& signals, acb::broker::Server& server) {
  signals.async_wait([&signals, &server](const boost::system::error_code& ec, int signal_number) {
    if (ec) return;
    if (signal_number == SIGHUP) {
      server.reload();
      wait_for_signal(signals, server);
      return;
    }
    std::fprintf(stderr, "acb-broker: %s, shutting down\n", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
    signals.cancel();
    server.stop();
  });
}

}  // namespace

int main(int argc, char** argv) {
  acb::broker::CommandLine command_line;
  BrokerConfig config;
  try {
    command_line = acb::broker::parse_command_line(argc, argv);
    if (command_line.help) {
      std::fputs(acb::broker::usage(), stdout);
      return 0;
    }
    config = acb::broker::load_config(command_line, [] {
      std::string why_none;
      std::vector<acb::broker::DeviceSpec> gpus = acb::broker::probe_cuda_devices(why_none);
      if (gpus.empty()) {
        std::fprintf(stderr, "acb-broker: no --device given and no GPU found (%s): one device \"0\" of unknown capacity\n",
                     why_none.c_str());
      } else {
        for (const auto& gpu : gpus) {
          std::fprintf(stderr, "acb-broker: device %s: GPU %s (%s), %llu bytes (from the CUDA driver)\n",
                       gpu.name.c_str(), gpu.name.c_str(), gpu.uuid.c_str(),
                       static_cast<unsigned long long>(gpu.capacity_bytes));
        }
      }
      return gpus;
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acb-broker: %s\n", e.what());
    return 2;
  }

  acb::broker::Tokens tokens;
  try {
    tokens.client = acb::auth::load_or_create_token(acb::auth::TokenKind::client);
    tokens.admin = acb::auth::load_or_create_token(acb::auth::TokenKind::admin);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acb-broker: cannot set up the tokens: %s\n", e.what());
    return 1;
  }

  raise_fd_limit();
  boost::asio::io_context io(1);
  // Install the handlers before anything can be accepted, so an early signal is not lost.
  boost::asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  acb::broker::Server server(io, config, command_line, tokens);
  try {
    server.start();
  } catch (const boost::system::system_error& e) {
    std::fprintf(stderr, "acb-broker: cannot listen on %s port %u (metrics port %u): %s\n", config.host.c_str(),
                 static_cast<unsigned>(config.port), static_cast<unsigned>(config.metrics_port),
                 e.code().message().c_str());
    return 1;
  } catch (const acb::broker::ConfigError& e) {  // e.g. a --host that does not resolve
    std::fprintf(stderr, "acb-broker: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acb-broker: %s\n", e.what());
    return 1;
  }
  wait_for_signal(signals, server);

  if (!config.port_file.empty()) {
    try {
      write_port_file(config.port_file, config, server.port(), server.metrics_port());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "acb-broker: %s\n", e.what());
      return 1;
    }
  }
  std::printf("acb-broker listening on %s:%u metrics %s:%u\n", config.host.c_str(), static_cast<unsigned>(server.port()),
              config.host.c_str(), static_cast<unsigned>(server.metrics_port()));
  std::fflush(stdout);

  acb::broker::run_event_loop(io, std::chrono::microseconds(config.busy_poll_us));
  std::fprintf(stderr, "acb-broker: stopped\n");
  return 0;
}
