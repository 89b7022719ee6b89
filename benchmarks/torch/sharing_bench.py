"""Sharing: N training jobs with device and CPU phases on one device
(emulated; a GPU with ACB_BENCH_DEVICE=cuda, see bench_common.py).

- sequential: each job alone without acb, one after another (sum of loop times);
- acb: all at once under acb (makespan = last loop end - first loop start);
- ideal: the work-conserving bound, max(total device time, longest job alone),
  where total device time is the sum of the jobs' time in their steps alone.
The device (64 MiB) holds all the jobs at once, so nothing is offloaded.

Then the same jobs under pressure: on a device that holds one working set
(the largest job's peak reservation in the first run plus PRESSURE_MARGIN,
checked to be less than the two smallest together), so every handoff moves
memory; the benchmark fails if that run made no offload. Its ideal bound adds
the copying no schedule with that many switches avoids:
  ideal = max(total device time + switches x raw copy time of the bytes one
              switch moved, longest job alone),
the bytes per switch being the run's offload copies plus restores over its
switches, the raw copy one memcpy of that many bytes in the same run
(bench_common.raw_copy_ms). It takes acb's switch count as given.

Then inference served with priority while two trainers share the device:
the inference job's waits for the device. INFER_REQUESTS requests so that
the p99 is not the maximum; with fewer than 100 waits it is not printed.

FIGURE sharing_speedup_vs_sequential (sequential / acb makespan)
FIGURE sharing_efficiency_vs_ideal (ideal / acb makespan)
FIGURE sharing_pressure_speedup_vs_sequential, sharing_pressure_efficiency_vs_ideal
  (targets >= 1.8 and >= 0.9)
FIGURE inference_p99_wait_ms (with >= 100 waits), inference_max_wait_ms
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench_common import Broker, figure, job_cmd, plain_env, raw_copy_ms, run_all, status

JOBS = [
    ("--model", "mlp", "--seed", "1", "--steps", "10", "--cpu-ms", "80"),
    ("--model", "cnn", "--seed", "2", "--steps", "10", "--cpu-ms", "80"),
    ("--model", "mlp", "--seed", "3", "--steps", "10", "--cpu-ms", "80"),
]
# A short quantum: an equal waiter gets the device at the holder's next idle gap.
BROKER_FLAGS = ("--quantum-ms", "20", "--aging-ms", "300")
PRESSURE_MARGIN = 1 << 20
MIB = 1 << 20
INFER_REQUESTS = 150
INFER_INTERVAL_MS = 40
TRAINER_STEPS = "60"  # the two trainers beside inference run about as long as its requests


def run_shared(broker: Broker, work: Path, label: str) -> list:
    """All JOBS at once under acb on `broker`; their status files."""
    paths = [work / f"{label}{i}.json" for i in range(len(JOBS))]
    start = ("--barrier", str(fresh_dir(work, label)))
    run_all([job_cmd("train_job.py", *args, *start, "--out", str(work / f"{label}{i}.pt"), "--status", str(p))
             for i, (args, p) in enumerate(zip(JOBS, paths))], [broker.env() for _ in JOBS], barrier=Path(start[1]))
    return [status(p) for p in paths]


def fresh_dir(work: Path, label: str) -> Path:
    """A new barrier directory: the jobs start their loops together once all are ready
    (torch's import alone takes seconds on a loaded 2-core machine, and varies)."""
    path = work / f"barrier-{label}"
    path.mkdir()
    return path


def makespan_of(shared: list) -> float:
    return max(s["ended"] for s in shared) - min(s["started"] for s in shared)


def with_steps(args: tuple, steps: str) -> tuple:
    out = list(args)
    out[out.index("--steps") + 1] = steps
    return tuple(out)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="acb-sharing-"))
    alone = []
    for i, args in enumerate(JOBS):
        path = work / f"alone{i}.json"
        run_all([job_cmd("train_job.py", *args, "--out", str(work / f"a{i}.pt"), "--status", str(path))],
                [plain_env()])
        alone.append(status(path))
    sequential = sum(s["elapsed_s"] for s in alone)
    ideal = max(sum(s["gpu_s"] for s in alone), max(s["elapsed_s"] for s in alone))

    # On CUDA each working set also holds cuBLAS's workspace (32 MiB with the
    # deterministic CUBLAS_WORKSPACE_CONFIG of bench_common.plain_env).
    broker = Broker("64MiB", *BROKER_FLAGS, cuda_capacity="128MiB")
    try:
        shared = run_shared(broker, work, "s")
        makespan = makespan_of(shared)

        infer_path = work / "infer.json"
        start = ("--barrier", str(fresh_dir(work, "infer")))
        run_all([job_cmd("infer_job.py", "--requests", str(INFER_REQUESTS), "--interval-ms", str(INFER_INTERVAL_MS),
                         *start, "--out", str(work / "i.pt"), "--status", str(infer_path)),
                 job_cmd("train_job.py", *with_steps(JOBS[0], TRAINER_STEPS), *start, "--out", str(work / "t0.pt")),
                 job_cmd("train_job.py", *with_steps(JOBS[1], TRAINER_STEPS), *start, "--out", str(work / "t1.pt"))],
                [broker.env(ACB_PRIORITY="inference"), broker.env(), broker.env()], barrier=Path(start[1]))
        infer = status(infer_path)["acb"]
    finally:
        broker.close()

    peaks = sorted(s["acb"]["reserved_bytes_peak"] for s in shared)
    capacity = -(-(peaks[-1] + PRESSURE_MARGIN) // MIB)  # MiB, rounded up
    if capacity * MIB >= peaks[0] + peaks[1]:
        raise SystemExit(f"benchmarks/torch: a {capacity} MiB device would hold two of the jobs "
                         f"(peaks {[p // 1024 for p in peaks]} KiB): no pressure")
    broker = Broker(f"{capacity}MiB", *BROKER_FLAGS, cuda_capacity=f"{capacity}MiB")
    try:
        pressed = run_shared(broker, work, "p")
    finally:
        broker.close()
    pressed_makespan = makespan_of(pressed)
    totals = {k: sum(s["acb"][k] for s in pressed)
              for k in ("switches", "offloads", "offload_copied_bytes", "restored_bytes", "skipped_clean_bytes")}
    if totals["offloads"] == 0 or totals["switches"] == 0:
        raise SystemExit(f"benchmarks/torch: the run on the {capacity} MiB device made {totals['offloads']} offloads: "
                         "it measured no pressure")
    per_switch = (totals["offload_copied_bytes"] + totals["restored_bytes"]) / totals["switches"]
    copy_s = totals["switches"] * raw_copy_ms(per_switch) / 1000
    pressed_ideal = max(sum(s["gpu_s"] for s in alone) + copy_s, max(s["elapsed_s"] for s in alone))

    figure("sharing_sequential_makespan_s", sequential, "s")
    figure("sharing_acb_makespan_s", makespan, "s")
    figure("sharing_ideal_bound_s", ideal, "s")
    figure("sharing_speedup_vs_sequential", sequential / makespan, "ratio")
    figure("sharing_efficiency_vs_ideal", ideal / makespan, "ratio")
    figure("sharing_switches", sum(s["acb"]["switches"] for s in shared), "count")
    figure("sharing_offloads", sum(s["acb"]["offloads"] for s in shared), "count")
    figure("sharing_pressure_device_mib", capacity, "MiB")
    figure("sharing_pressure_acb_makespan_s", pressed_makespan, "s")
    figure("sharing_pressure_copy_s", copy_s, "s")
    figure("sharing_pressure_ideal_bound_s", pressed_ideal, "s")
    figure("sharing_pressure_speedup_vs_sequential", sequential / pressed_makespan, "ratio")
    figure("sharing_pressure_efficiency_vs_ideal", pressed_ideal / pressed_makespan, "ratio")
    figure("sharing_pressure_switches", totals["switches"], "count")
    figure("sharing_pressure_offloads", totals["offloads"], "count")
    figure("sharing_pressure_bytes_copied_per_switch", per_switch, "bytes")
    figure("sharing_pressure_clean_bytes_skipped_per_switch", totals["skipped_clean_bytes"] / totals["switches"],
           "bytes")
    figure("inference_waits", infer["waits"], "count")
    figure("inference_max_wait_ms", infer["wait_max_ms"], "ms")
    if infer["waits"] >= 100:
        figure("inference_p99_wait_ms", infer["wait_p99_ms"], "ms")
    else:
        print(f"sharing: inference_p99_wait_ms not printed: {infer['waits']} waits are too few for a p99", flush=True)


if __name__ == "__main__":
    main()
