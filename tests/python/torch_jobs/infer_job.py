"""A small inference server for acb's end-to-end tests and benchmarks.

Answers --requests requests that arrive every --interval-ms (the device is
idle in between), one forward pass each, with a fixed-seed model. Saves the
outputs with torch.save and, when acb is enabled, acb.status() and the
per-request latencies as JSON.

    python infer_job.py --out outputs.pt [--status status.json] [--requests 10]
                        [--interval-ms 60] [--seed 7]
"""

import argparse
import json
import time

import torch

import acb
from lockstep import add_sync_arguments, step_done, wait_for_start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--status")
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--interval-ms", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=7)
    add_sync_arguments(p)
    args = p.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                                torch.nn.ReLU(), torch.nn.Linear(1024, 10)).eval().to(args.device)
    generator = torch.Generator().manual_seed(args.seed + 1)
    wait_for_start(args)
    outputs = []
    latencies_ms = []
    for step in range(args.requests):
        time.sleep(args.interval_ms / 1000.0)  # waiting for the next request: the device is idle
        started = time.monotonic()
        with torch.no_grad():
            x = torch.randn(8, 256, generator=generator).to(args.device)
            outputs.append(model(x).clone())
        latencies_ms.append((time.monotonic() - started) * 1000.0)
        if args.lockstep:
            step_done(args.lockstep, step, args.lockstep_jobs)
    with acb.region():
        torch.save({"outputs": torch.stack(outputs).cpu()}, args.out)
    if args.status:
        with open(args.status, "w") as f:
            json.dump({"latencies_ms": latencies_ms, "acb": acb.status().as_dict()}, f)


if __name__ == "__main__":
    main()
