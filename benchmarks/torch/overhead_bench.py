"""Uncontended overhead: the step time of a small training loop with acb
enabled and no other client, divided by the same loop without acb, in the
same run (alternating, median of the loop times of each).

FIGURE uncontended_step_ratio (target <= 1.01).
"""

from __future__ import annotations

import statistics
from pathlib import Path
import tempfile

from bench_common import Broker, figure, job_cmd, plain_env, run_all, status

ROUNDS = 3
ARGS = ("--model", "mlp", "--steps", "40", "--cpu-ms", "0")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="acb-overhead-"))
    broker = Broker("256MiB")
    plain, shared = [], []
    try:
        for r in range(ROUNDS):
            for label, env, out in (("plain", plain_env(), plain), ("acb", broker.env(), shared)):
                path = work / f"{label}{r}.json"
                run_all([job_cmd("train_job.py", *ARGS, "--out", str(work / "w.pt"), "--status", str(path))], [env])
                s = status(path)
                if label == "acb" and not s["acb"]["enabled"]:
                    raise SystemExit("benchmarks/torch: acb was not enabled in the acb run")
                out.append(s["elapsed_s"])
    finally:
        broker.close()
    figure("uncontended_step_ms_plain", statistics.median(plain) / 40 * 1000, "ms")
    figure("uncontended_step_ms_acb", statistics.median(shared) / 40 * 1000, "ms")
    figure("uncontended_step_ratio", statistics.median(shared) / statistics.median(plain), "ratio")


if __name__ == "__main__":
    main()
