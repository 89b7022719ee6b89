"""Uncontended overhead: the step time of a small training loop with acb
enabled and no other client, divided by the same loop on the same arena
without acb's op hook and lease, in the same run (alternating rounds; the
fastest loop of each, which is the least disturbed by other load on a shared
machine).

On the emulated device the arena is also the allocator: a run without acb
would allocate from glibc instead, and the ratio against it (printed as
uncontended_step_ratio_vs_plain) mixes the two allocators' speed with acb's
cost. The baseline is therefore arena_only.py: acb enabled, so the same
arena serves every allocation, but the whole job runs inside one region
(the lease taken once) on a thread detached from the op hook, so no
operator pays the gate, the dirty marking or the lease check. What the ratio
shows is that per-operator and per-region cost. On CUDA (ACB_BENCH_DEVICE=
cuda) the same holds: both runs allocate from the arena through the CUDA
allocator.

FIGURE uncontended_step_ratio (acb / arena without hook and lease; target <= 1.01).
FIGURE uncontended_step_ratio_vs_plain (acb / no acb at all: a different allocator on the emulated device).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench_common import Broker, figure, job_cmd, plain_env, run_all, status

ROUNDS = 5
ARGS = ("--model", "mlp", "--steps", "40", "--cpu-ms", "0")
ARENA_ONLY = str(Path(__file__).resolve().parent / "arena_only.py")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="acb-overhead-"))
    broker = Broker("256MiB", cuda_capacity="1GiB")
    times = {"plain": [], "arena": [], "acb": []}
    try:
        for r in range(ROUNDS):
            for label, env in (("plain", plain_env()), ("arena", broker.env()), ("acb", broker.env())):
                path = work / f"{label}{r}.json"
                cmd = job_cmd("train_job.py", *ARGS, "--out", str(work / "w.pt"), "--status", str(path))
                if label == "arena":
                    cmd = [sys.executable, ARENA_ONLY, *cmd[1:]]
                run_all([cmd], [env])
                s = status(path)
                if label != "plain" and not (s["acb"]["enabled"] and s["acb"]["reserved_bytes_peak"] > 0):
                    raise SystemExit(f"benchmarks/torch: the {label} run did not allocate from acb's arena: {s['acb']}")
                times[label].append(s["elapsed_s"])
    finally:
        broker.close()
    figure("uncontended_step_ms_plain", min(times["plain"]) / 40 * 1000, "ms")
    figure("uncontended_step_ms_arena_only", min(times["arena"]) / 40 * 1000, "ms")
    figure("uncontended_step_ms_acb", min(times["acb"]) / 40 * 1000, "ms")
    figure("uncontended_step_ratio", min(times["acb"]) / min(times["arena"]), "ratio")
    figure("uncontended_step_ratio_vs_plain", min(times["acb"]) / min(times["plain"]), "ratio")


if __name__ == "__main__":
    main()
