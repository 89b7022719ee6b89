"""An inference service driven over stdin, for the scheduling tests: enables
acb with a priority, then for each line "request" answers one request (a
forward pass of a fixed-seed model) and goes idle until the next line; "exit"
ends it. It prints JSON lines: {"event": "ready"}, then per request
{"event": "answered", "started": t, "finished": t, "status": acb.status()}
(times are time.monotonic()). Between requests it runs no tensor work, so the
process holds its lease idle.

    python idle_job.py [--priority inference] [--seed 3]
"""

import argparse
import json
import sys
import time

import torch

import acb


def say(**event) -> None:
    print(json.dumps(event), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--priority", default="inference")
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    acb.enable(priority=args.priority)
    torch.manual_seed(args.seed)
    model = None
    say(event="ready")
    for line in sys.stdin:
        command = line.strip()
        if command == "exit":
            break
        if command != "request":
            raise SystemExit(f"idle_job: unknown command {command!r} (expected request or exit)")
        started = time.monotonic()
        with torch.no_grad():
            if model is None:
                model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                            torch.nn.Linear(256, 10)).eval()
            answer = model(torch.ones(4, 256)).sum().item()
        finished = time.monotonic()
        say(event="answered", started=started, finished=finished, answer=answer,
            status=acb.status().as_dict())


if __name__ == "__main__":
    main()
