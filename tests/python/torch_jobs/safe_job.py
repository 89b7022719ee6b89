"""A job that writes tensor memory outside any operator (through a numpy
view), for the safe-mode test. Driven by lines on stdin, it says what it
reached as JSON lines on stdout ({"event": ...}):

    ready    24 MiB built by operators
    written  after "raw": one operator (which may wait for the device), then
             the raw write of 5.0 everywhere, which no operator declares
    done     after "check": the sum, read by an operator, and acb.status()

    python safe_job.py [--safe]
"""

import argparse
import json
import select
import sys

import torch

import acb

MIB_FLOATS = (1 << 20) // 4


def say(event: str, **extra) -> None:
    print(json.dumps({"event": event, **extra}), flush=True)


def wait_line(expected: str, timeout_s: float = 120.0) -> None:
    ready, _, _ = select.select([sys.stdin], [], [], timeout_s)
    if not ready:
        raise SystemExit(f"no {expected!r} on stdin within {timeout_s} s")
    line = sys.stdin.readline().strip()
    if line != expected:
        raise SystemExit(f"expected {expected!r} on stdin, got {line!r}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--safe", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    acb.enable(safe=args.safe)
    x = torch.zeros(24 * MIB_FLOATS)
    x.add_(1)
    say("ready")
    wait_line("raw")
    x.sum()  # an operator: the device comes back, with x restored
    x.numpy()[:] = 5.0  # no operator sees this write (as a kernel on data_ptr() would not)
    say("written")
    wait_line("check")
    total = x.sum().item()
    say("done", total=total, status=acb.status().as_dict())


if __name__ == "__main__":
    main()
