// acb_broker_bench: lease latency against a running acb-broker.
//
//   acb_broker_bench --port N [--host H] [--rounds N] [--max-clients N]
//
// Grant round trip: one client acquires (the device is free) and releases,
// timing acquire() -> grant, with 0, 9, 99 and 999 other clients connected
// and idle (real BrokerClients, so they heartbeat like user processes).
// Handoff: client B is already queued when client A releases; the time from
// A's release() to B's acquire() returning. Prints FIGURE lines; asserts nothing.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/broker_client.h"

namespace {

using Clock = std::chrono::steady_clock;
using acb::client::BrokerClient;
using acb::client::ClientOptions;

struct Args {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  int rounds = 2000;
  int max_clients = 1000;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* v = argv[i + 1];
    if (flag == "--host") a.host = v;
    else if (flag == "--port") a.port = static_cast<std::uint16_t>(std::atoi(v));
    else if (flag == "--rounds") a.rounds = std::atoi(v);
    else if (flag == "--max-clients") a.max_clients = std::atoi(v);
    else {
      std::fprintf(stderr, "acb_broker_bench: unknown flag %s\n", flag.c_str());
      std::exit(2);
    }
  }
  if (a.port == 0) {
    std::fprintf(stderr, "usage: acb_broker_bench --port N [--host H] [--rounds N] [--max-clients N]\n");
    std::exit(2);
  }
  return a;
}

ClientOptions options(const Args& a, const std::string& name) {
  ClientOptions o;
  o.host = a.host;
  o.port = a.port;
  o.name = name;
  o.device = 0;
  o.connect_timeout = std::chrono::milliseconds(20000);
  return o;
}

double percentile_us(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

std::vector<double> grant_rtts(BrokerClient& client, int rounds) {
  for (int i = 0; i < rounds / 10; ++i) {  // warm-up: caches, the broker's allocations
    client.acquire();
    client.release();
  }
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(rounds));
  for (int i = 0; i < rounds; ++i) {
    const auto t0 = Clock::now();
    client.acquire();
    samples.push_back(us_since(t0));
    client.release();
  }
  return samples;
}

// True once the broker lists `waiter` in device 0's queue.
bool queued_at_broker(BrokerClient& observer, std::uint64_t waiter) {
  const auto status = observer.request({{"op", "status"}});
  for (const auto& d : status.at("devices")) {
    for (const auto& id : d.at("queue")) {
      if (id.get<std::uint64_t>() == waiter) return true;
    }
  }
  return false;
}

std::vector<double> handoffs(const Args& a, int rounds) {
  BrokerClient holder(options(a, "bench-holder"));
  BrokerClient waiter(options(a, "bench-waiter"));
  std::vector<double> samples;
  for (int i = 0; i < rounds; ++i) {
    holder.acquire();
    std::atomic<std::int64_t> granted_ns{0};
    std::thread t([&] {
      waiter.acquire();
      granted_ns = Clock::now().time_since_epoch().count();
    });
    // Wait (bounded) until the broker has queued the waiter: the handoff is
    // measured from a release with a waiter already queued.
    const auto give_up = Clock::now() + std::chrono::seconds(10);
    while (!queued_at_broker(holder, waiter.welcome().client_id) && Clock::now() < give_up) {
    }
    const auto t0 = Clock::now();
    holder.release();
    t.join();
    samples.push_back(static_cast<double>(granted_ns.load() - t0.time_since_epoch().count()) / 1000.0);
    waiter.release();
  }
  return samples;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    BrokerClient measured(options(a, "bench"));
    std::vector<std::unique_ptr<BrokerClient>> idle;
    for (int clients : {1, 10, 100, 1000}) {
      if (clients > a.max_clients) break;
      while (static_cast<int>(idle.size()) < clients - 1) {
        idle.push_back(std::make_unique<BrokerClient>(options(a, "idle-" + std::to_string(idle.size()))));
      }
      const auto rtts = grant_rtts(measured, a.rounds);
      const double p50 = percentile_us(rtts, 0.50);
      if (clients == 1) {
        std::printf("FIGURE broker_grant_rtt_p50_us %.1f us\n", p50);
        std::printf("FIGURE broker_grant_rtt_p99_us %.1f us\n", percentile_us(rtts, 0.99));
      } else {
        std::printf("FIGURE broker_grant_rtt_p50_us_%d_clients %.1f us\n", clients, p50);
      }
      std::fflush(stdout);
    }
    idle.clear();
    const auto h = handoffs(a, std::max(50, a.rounds / 4));
    std::printf("FIGURE broker_handoff_p50_us %.1f us\n", percentile_us(h, 0.50));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acb_broker_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
