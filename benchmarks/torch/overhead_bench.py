"""Uncontended overhead: the step time of a small training loop with acb
enabled and no other client, divided by the same loop without acb, in the
same run (alternating rounds; the fastest loop of each, which is the least
disturbed by other load on a shared machine).

FIGURE uncontended_step_ratio (target <= 1.01).
"""

from __future__ import annotations

from pathlib import Path
import tempfile

from bench_common import Broker, figure, job_cmd, plain_env, run_all, status

ROUNDS = 5
ARGS = ("--model", "mlp", "--steps", "40", "--cpu-ms", "0")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="acb-overhead-"))
    broker = Broker("256MiB", cuda_capacity="1GiB")
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
    figure("uncontended_step_ms_plain", min(plain) / 40 * 1000, "ms")
    figure("uncontended_step_ms_acb", min(shared) / 40 * 1000, "ms")
    figure("uncontended_step_ratio", min(shared) / min(plain), "ratio")


if __name__ == "__main__":
    main()
