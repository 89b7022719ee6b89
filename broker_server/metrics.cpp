#include "broker_server/metrics.h"

#include <cstdio>
#include <string_view>

#include "broker_server/config.h"

namespace acb::broker {
namespace {

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, std::string_view name, std::string_view labels, std::string_view value) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
  out += value;
  out += '\n';
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// Label values are device names chosen by operators: escape what the format requires.
std::string label_value(std::string_view raw) {
  std::string out;
  for (char c : raw) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void counter(std::string& out, const char* name, const char* help, std::uint64_t value) {
  header(out, name, "counter", help);
  sample(out, name, "", std::to_string(value));
}

}  // namespace

void WaitHistogram::observe(double seconds) {
  if (seconds < 0) seconds = 0;
  for (std::size_t i = 0; i < kBoundsSeconds.size(); ++i) {
    if (seconds <= kBoundsSeconds[i]) {
      ++buckets_[i];
      break;
    }
  }
  ++count_;
  sum_seconds_ += seconds;
}

std::uint64_t WaitHistogram::cumulative(std::size_t bucket) const {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= bucket && i < buckets_.size(); ++i) total += buckets_[i];
  return total;
}

void BrokerMetrics::on_residency_report(std::uint64_t before_bytes, std::uint64_t now_bytes) {
  if (now_bytes < before_bytes) evicted_bytes_total += before_bytes - now_bytes;
  if (now_bytes > before_bytes) restored_bytes_total += now_bytes - before_bytes;
}

std::string render_prometheus(const BrokerMetrics& metrics, const ArbiterCounters& counters,
                              const Snapshot& snapshot, std::size_t clients) {
  std::string out;
  out.reserve(4096);
  counter(out, "acb_leases_granted_total", "Compute leases granted.", counters.grants);
  counter(out, "acb_preemptions_total",
          "Revokes with reason preempt (a waiter of a better effective class came), one per holder revoked, "
          "a second revoke of a lease first revoked for another reason included.",
          counters.preemptions);
  counter(out, "acb_revokes_total",
          "Revokes sent, one per holder asked, for every reason (preempt, quantum, drain, share, gang); a second "
          "revoke of the same lease counts again.",
          counters.revokes);
  counter(out, "acb_evict_requests_total", "Evict messages sent to resident clients.", counters.evict_requests);
  counter(out, "acb_evict_requested_bytes_total", "Bytes that resident clients were asked to offload.",
          counters.evict_requested_bytes);
  counter(out, "acb_evicted_bytes_total",
          "Sum of decreases of clients' reported resident bytes (offloaded to host).",
          metrics.evicted_bytes_total);
  counter(out, "acb_restored_bytes_total",
          "Sum of increases of clients' reported resident bytes (restored or grown on the device).",
          metrics.restored_bytes_total);
  counter(out, "acb_rejects_total", "Acquires rejected (never grantable).", counters.rejects);
  counter(out, "acb_disconnects_total",
          "Placed clients (admin connections are none) that the arbiter forgot: their connection closed, or the "
          "policy disconnected them (no heartbeat, a revoke or an evict ignored past its deadline and grace, "
          "revoke_offences_max missed deadlines).",
          counters.disconnects);
  counter(out, "acb_protocol_errors_total", "Connections closed for a protocol error.",
          metrics.protocol_errors_total);
  counter(out, "acb_auth_failures_total", "Connections refused for a wrong token or role.",
          metrics.auth_failures_total);
  counter(out, "acb_connections_refused_total",
          "Connections refused at accept: over max_connections_per_uid or max_connections.",
          metrics.connections_refused_total);
  counter(out, "acb_internal_errors_total",
          "Connections closed because handling one of their frames failed inside the broker (a bug: please report).",
          metrics.internal_errors_total);
  counter(out, "acb_output_bound_closes_total",
          "Connections closed because all connections together had more than max_queued_output_mib queued "
          "for sending (each time the one with the largest backlog).",
          metrics.output_bound_closes_total);

  header(out, "acb_lease_wait_seconds", "histogram", "Time from acquire to grant.");
  for (std::size_t i = 0; i < WaitHistogram::kBoundsSeconds.size(); ++i) {
    sample(out, "acb_lease_wait_seconds_bucket", "le=\"" + number(WaitHistogram::kBoundsSeconds[i]) + "\"",
           std::to_string(metrics.lease_wait.cumulative(i)));
  }
  sample(out, "acb_lease_wait_seconds_bucket", "le=\"+Inf\"", std::to_string(metrics.lease_wait.count()));
  sample(out, "acb_lease_wait_seconds_sum", "", number(metrics.lease_wait.sum_seconds()));
  sample(out, "acb_lease_wait_seconds_count", "", std::to_string(metrics.lease_wait.count()));

  header(out, "acb_clients", "gauge", "Authenticated connections.");
  sample(out, "acb_clients", "", std::to_string(clients));

  header(out, "acb_device_holder", "gauge", "Client id holding the device's compute lease, -1 when free.");
  for (const auto& d : snapshot.devices) {
    sample(out, "acb_device_holder", "device=\"" + std::to_string(d.device) + "\",name=\"" + label_value(d.name) + "\"",
           d.holder ? std::to_string(*d.holder) : "-1");
  }
  header(out, "acb_device_resident_bytes", "gauge", "Bytes clients report resident on the device.");
  for (const auto& d : snapshot.devices) {
    sample(out, "acb_device_resident_bytes",
           "device=\"" + std::to_string(d.device) + "\",name=\"" + label_value(d.name) + "\"",
           std::to_string(d.resident_bytes));
  }
  header(out, "acb_device_capacity_bytes", "gauge", "Device memory capacity, 0 when unknown.");
  for (const auto& d : snapshot.devices) {
    sample(out, "acb_device_capacity_bytes",
           "device=\"" + std::to_string(d.device) + "\",name=\"" + label_value(d.name) + "\"",
           std::to_string(reported_capacity(d.capacity_bytes)));
  }
  header(out, "acb_device_queue_length", "gauge", "Clients waiting for the device's lease.");
  for (const auto& d : snapshot.devices) {
    sample(out, "acb_device_queue_length",
           "device=\"" + std::to_string(d.device) + "\",name=\"" + label_value(d.name) + "\"",
           std::to_string(d.queue.size()));
  }
  return out;
}

}  // namespace acb::broker
