"""Switching: inference services whose models do not fit on the device
together, so that every handoff of the device moves memory.

Two scenarios, each on its own private broker and emulated device (a GPU
with ACB_BENCH_DEVICE is not supported here yet): two services on a device
that holds 1/1.5-1/2 of their models, then three. The services
(switch_service.py: transformer decoders built from a fixed-seed config,
Poisson arrivals with a fixed seed, all `--priority inference`) run one
process each through the same schedule: each service alone (solo<i>), then
all together (shared). A phase's first WARMUP requests of each service are
left out (the device moves onto the phase's services then).

Figures, the unsuffixed ones from the two-service scenario, the same with
`_3svc` from the three-service one:
- switch_request_p99_ms_solo / _shared: p99 of request latency (from the
  request's scheduled arrival to its answer) over every service's requests
  in its solo phase / in the shared phase (also per service: `_svc<i>`).
- switch_bytes_copied_per_switch: bytes the memory managers copied in the
  shared phase (offloads' copies plus restores, all services) per switch
  (grant of the device onto a service); the two parts apart as
  switch_offload_bytes_copied_per_switch and switch_restored_bytes_per_switch.
- switch_clean_bytes_skipped_per_switch: bytes offloads skipped as clean
  (unchanged since their host backup) per switch.
- switch_raw_copy_ms: one memcpy (ctypes.memmove, libc) of
  switch_bytes_copied_per_switch bytes between two pre-faulted host
  buffers, best of 5 (bench_common.raw_copy_ms), in the same run: the
  honest best case for moving what one switch moves.
- switch_p99_excess_over_copy_ratio: (shared p99 - solo p99) / raw copy
  time (target <= 1.2).
- switch_time_to_first_op_ms / switch_full_restore_ms: over the shared
  phase's requests that switched the device onto their service, the median
  time from arrival to the first operator's end (a one-element read of the
  embedding) and to every parameter having been read (a one-element read
  each: the whole model resident). Both include the wait for the holder to
  yield (switch_time_to_first_op_p99_ms: the p99 of the first). Restore is
  not pipelined today (the grant restores everything before the first
  operator runs), so the two are about equal; the target is first op <= 10%
  of full restore.
- switch_offloads: offloads in the shared phase; the benchmark fails if it is
  0 (the device must not hold the services together).

ACB_BENCH_QUICK=1: 40 requests per phase (the p99 figures are then the
maximum) and only the two-service scenario.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from bench_common import ON_CUDA, Broker, figure, raw_copy_ms, status

HERE = Path(__file__).resolve().parent
QUICK = os.environ.get("ACB_BENCH_QUICK") == "1"
# Per service and phase, WARMUP (switch_service.py) more than are measured:
# 100 measured make a p99 that is not the maximum.
REQUESTS = 40 if QUICK else 103
INTERVAL_MS = 90.0
# (services, emulated device capacity): the models (22.1 MiB of parameters
# each) together 1.5-2x the device; one working set fits.
SCENARIOS = [(2, "28MiB")] if QUICK else [(2, "28MiB"), (3, "40MiB")]
MIB = 1 << 20


def p99(values: List[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def run_services(services: int, capacity: str) -> List[dict]:
    work = Path(tempfile.mkdtemp(prefix="acb-switch-"))
    barrier = work / "barrier"
    barrier.mkdir()
    broker = Broker(capacity)
    try:
        procs = []
        for i in range(services):
            cmd = [sys.executable, str(HERE / "switch_service.py"), "--index", str(i), "--services", str(services),
                   "--barrier", str(barrier), "--status", str(work / f"svc{i}.json"), "--requests", str(REQUESTS),
                   "--interval-ms", str(INTERVAL_MS)]
            procs.append(subprocess.Popen(cmd, env=broker.env(ACB_PRIORITY="inference"), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE))
        deadline = time.monotonic() + 300
        while sum(1 for n in os.listdir(barrier) if n.endswith(".ready")) < services:
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # waiting for the services' ready files
        (barrier / "go.tmp").write_text(str(time.monotonic() + 0.5))
        (barrier / "go.tmp").rename(barrier / "go")
        for p in procs:
            _, err = p.communicate(timeout=600)
            if p.returncode != 0:
                raise SystemExit(f"benchmarks/torch: {p.args} exited {p.returncode}: {err.decode()[-2000:]}")
    finally:
        broker.close()
    return [status(work / f"svc{i}.json") for i in range(services)]


def measured(requests: List[dict]) -> List[dict]:
    return [r for r in requests if not r["warmup"]]


def report(services: int, capacity: str, results: List[dict]) -> None:
    tag = "" if services == 2 else f"_{services}svc"
    phases = [{p["name"]: p for p in r["phases"]} for r in results]
    models = sum(r["param_bytes"] for r in results)
    device = int(capacity[: -len("MiB")]) * MIB
    figure(f"switch_models_over_device_ratio{tag}", models / device, "ratio")
    if not 1.5 <= models / device <= 2.0:
        raise SystemExit(f"benchmarks/torch: the models ({models / MIB:.1f} MiB) are {models / device:.2f}x the "
                         f"{capacity} device, not 1.5-2x: change SCENARIOS")
    solo: List[float] = []
    shared: List[float] = []
    for i, ph in enumerate(phases):
        mine_solo = [r["latency_ms"] for r in measured(ph[f"solo{i}"]["requests"])]
        mine_shared = [r["latency_ms"] for r in measured(ph["shared"]["requests"])]
        figure(f"switch_request_p99_ms_solo{tag}_svc{i}", p99(mine_solo), "ms")
        figure(f"switch_request_p99_ms_shared{tag}_svc{i}", p99(mine_shared), "ms")
        solo += mine_solo
        shared += mine_shared
    totals: Dict[str, int] = {}
    for ph in phases:
        for k, v in ph["shared"]["counters"].items():
            totals[k] = totals.get(k, 0) + v
    figure(f"switch_offloads{tag}", totals["offloads"], "count")
    figure(f"switch_switches{tag}", totals["switches"], "count")
    if totals["offloads"] == 0 or totals["switches"] == 0:
        raise SystemExit(f"benchmarks/torch: the shared phase made {totals['offloads']} offloads and "
                         f"{totals['switches']} switches: the device held every model, nothing was measured")
    per_switch = (totals["offload_copied_bytes"] + totals["restored_bytes"]) / totals["switches"]
    copy_ms = raw_copy_ms(int(per_switch))
    switched = [r for ph in phases for r in measured(ph["shared"]["requests"]) if r["switched"]]
    figure(f"switch_request_p50_ms_solo{tag}", statistics.median(solo), "ms")
    figure(f"switch_request_p50_ms_shared{tag}", statistics.median(shared), "ms")
    figure(f"switch_request_p99_ms_solo{tag}", p99(solo), "ms")
    figure(f"switch_request_p99_ms_shared{tag}", p99(shared), "ms")
    figure(f"switch_requests_measured{tag}", len(shared), "count")
    figure(f"switch_bytes_copied_per_switch{tag}", per_switch, "bytes")
    figure(f"switch_offload_bytes_copied_per_switch{tag}", totals["offload_copied_bytes"] / totals["switches"], "bytes")
    figure(f"switch_restored_bytes_per_switch{tag}", totals["restored_bytes"] / totals["switches"], "bytes")
    figure(f"switch_clean_bytes_skipped_per_switch{tag}", totals["skipped_clean_bytes"] / totals["switches"], "bytes")
    figure(f"switch_raw_copy_ms{tag}", copy_ms, "ms")
    figure(f"switch_p99_excess_over_copy_ratio{tag}", (p99(shared) - p99(solo)) / copy_ms, "ratio")
    if switched:
        first = statistics.median(r["first_op_ms"] for r in switched)
        full = statistics.median(r["all_resident_ms"] for r in switched)
        figure(f"switch_time_to_first_op_ms{tag}", first, "ms")
        figure(f"switch_full_restore_ms{tag}", full, "ms")
        figure(f"switch_first_op_fraction_of_restore{tag}", first / full, "ratio")
        figure(f"switch_time_to_first_op_p99_ms{tag}", p99([r["first_op_ms"] for r in switched]), "ms")
    figure(f"switch_switched_requests{tag}", len(switched), "count")


def main() -> None:
    if ON_CUDA:
        raise SystemExit("benchmarks/torch: switch_bench.py runs on the emulated device only (unset ACB_BENCH_DEVICE)")
    if QUICK:
        print("switch: ACB_BENCH_QUICK=1: 40 requests per phase, so the p99 figures are maxima", flush=True)
    for services, capacity in SCENARIOS:
        report(services, capacity, run_services(services, capacity))


if __name__ == "__main__":
    main()
