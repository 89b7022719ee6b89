"""Sharing: N training jobs with device and CPU phases on one device
(emulated; a GPU with ACB_BENCH_DEVICE=cuda, see bench_common.py).

- sequential: each job alone without acb, one after another (sum of loop times);
- acb: all at once under acb (makespan = last loop end - first loop start);
- ideal: the work-conserving bound, max(total device time, longest job alone).
Then inference served with priority while two trainers share the device:
the inference job's p99 wait for the device.

FIGURE sharing_speedup_vs_sequential (sequential / acb makespan)
FIGURE sharing_efficiency_vs_ideal (ideal / acb makespan)
FIGURE inference_p99_wait_ms
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench_common import Broker, figure, job_cmd, plain_env, run_all, status

JOBS = [
    ("--model", "mlp", "--seed", "1", "--steps", "10", "--cpu-ms", "80"),
    ("--model", "cnn", "--seed", "2", "--steps", "10", "--cpu-ms", "80"),
    ("--model", "mlp", "--seed", "3", "--steps", "10", "--cpu-ms", "80"),
]
# A short quantum: an equal waiter gets the device at the holder's next idle gap.
BROKER_FLAGS = ("--quantum-ms", "20", "--aging-ms", "300")
# Jobs start their loops together, this long after launch (torch's import
# alone takes seconds on a loaded 2-core machine).
START_DELAY_S = 12.0


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
        paths = [work / f"acb{i}.json" for i in range(len(JOBS))]
        start = ("--start-at", str(time.monotonic() + START_DELAY_S))
        run_all([job_cmd("train_job.py", *args, *start, "--out", str(work / f"s{i}.pt"), "--status", str(p))
                 for i, (args, p) in enumerate(zip(JOBS, paths))], [broker.env() for _ in JOBS])
        shared = [status(p) for p in paths]
        makespan = max(s["ended"] for s in shared) - min(s["started"] for s in shared)

        infer_path = work / "infer.json"
        start = ("--start-at", str(time.monotonic() + START_DELAY_S))
        run_all([job_cmd("infer_job.py", "--requests", "20", "--interval-ms", "40", *start, "--out",
                         str(work / "i.pt"), "--status", str(infer_path)),
                 job_cmd("train_job.py", *JOBS[0], *start, "--out", str(work / "t0.pt")),
                 job_cmd("train_job.py", *JOBS[1], *start, "--out", str(work / "t1.pt"))],
                [broker.env(ACB_PRIORITY="inference"), broker.env(), broker.env()])
        infer = status(infer_path)["acb"]
    finally:
        broker.close()
    figure("sharing_sequential_makespan_s", sequential, "s")
    figure("sharing_acb_makespan_s", makespan, "s")
    figure("sharing_ideal_bound_s", ideal, "s")
    figure("sharing_speedup_vs_sequential", sequential / makespan, "ratio")
    figure("sharing_efficiency_vs_ideal", ideal / makespan, "ratio")
    figure("sharing_switches", sum(s["acb"]["switches"] for s in shared), "count")
    figure("sharing_offloads", sum(s["acb"]["offloads"] for s in shared), "count")
    figure("inference_p99_wait_ms", infer["wait_p99_ms"], "ms")
    figure("inference_waits", infer["waits"], "count")


if __name__ == "__main__":
    main()
