// The broker's metrics and their Prometheus text rendering (GET /metrics).
//
// Counters that the arbiter keeps (grants, preemptions, evict requests) are
// read from ArbiterCounters; what only the I/O layer sees (how long an
// acquire waited for its grant, how clients' reported residency moved) is
// kept here. Residency moves are defined from the clients' own reports
// (`release`/`residency` members `resident_bytes`): a report lower than the
// client's previous one adds the difference to acb_evicted_bytes_total, a
// higher one to acb_restored_bytes_total. A client's first report counts from
// 0, and a disconnect does not count as eviction (its memory is freed, not
// offloaded).
//
// Thread-safety: none; used from the server's io_context thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "broker_server/arbiter.h"

namespace acb::broker {

/// Cumulative histogram of lease wait times (acquire to grant), in seconds.
class WaitHistogram {
 public:
  /// Upper bounds of the buckets, seconds; +Inf is implicit.
  static constexpr std::array<double, 12> kBoundsSeconds = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05,
                                                            0.1,    0.5,    1.0,   5.0,   10.0, 60.0};
  void observe(double seconds);
  std::uint64_t count() const { return count_; }
  double sum_seconds() const { return sum_seconds_; }
  /// Observations <= kBoundsSeconds[i] (cumulative, as Prometheus wants).
  std::uint64_t cumulative(std::size_t bucket) const;

 private:
  std::array<std::uint64_t, kBoundsSeconds.size()> buckets_{};
  std::uint64_t count_ = 0;
  double sum_seconds_ = 0;
};

struct BrokerMetrics {
  WaitHistogram lease_wait;
  std::uint64_t evicted_bytes_total = 0;
  std::uint64_t restored_bytes_total = 0;
  std::uint64_t protocol_errors_total = 0;
  std::uint64_t auth_failures_total = 0;
  std::uint64_t connections_refused_total = 0;  ///< over max_connections or max_connections_per_uid
  std::uint64_t internal_errors_total = 0;      ///< connections closed because handling their frame threw
  std::uint64_t output_bound_closes_total = 0;  ///< largest backlogs closed over max_queued_output_mib

  /// A client reported `now_bytes` resident after `before_bytes`.
  void on_residency_report(std::uint64_t before_bytes, std::uint64_t now_bytes);
};

/// The Prometheus text exposition (format 0.0.4) of everything.
/// `clients` counts authenticated connections, admin ones included.
std::string render_prometheus(const BrokerMetrics& metrics, const ArbiterCounters& counters,
                              const Snapshot& snapshot, std::size_t clients);

}  // namespace acb::broker
