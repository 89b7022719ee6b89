"""Two roles for the acb.disable() test, driven by lines on stdin and saying
what they reached as JSON lines on stdout ({"event": ...}).

--role disabler: enables acb, builds 30 MiB, disables acb ("disabled") and
    goes on computing on it ungated until "resume"; then enables acb again,
    computes, saves the sums to --out ("done").
--role waiter: enables acb, builds 40 MiB and steps once ("stepped"); on
    "continue" steps twice more and saves the sums to --out ("done").

The arithmetic (full, mul_, add_) is exact in float32, so the test knows the
results without a reference run.
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


def pieces(count: int) -> list:
    """`count` tensors of 2 MiB (one segment each), filled with 0, 1, 2, ..."""
    return [torch.full((2 * MIB_FLOATS,), float(i)) for i in range(count)]


def save(values: list, path: str) -> None:
    with acb.region():  # torch.save reads storages directly, outside operators
        torch.save(torch.stack([t.sum() for t in values]).clone(), path)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--role", required=True, choices=["disabler", "waiter"])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    acb.enable()
    if args.role == "disabler":
        values = pieces(15)
        for t in values:
            t.mul_(2)
        acb.disable()
        say("disabled")
        for t in values:
            t.add_(1)  # ungated: nothing of it may be offloaded now
        wait_line("resume")
        for t in values:
            t.add_(1)
        acb.enable()
        for t in values:
            t.add_(1)
    else:
        values = pieces(20)
        for t in values:
            t.mul_(3)
        say("stepped")
        wait_line("continue")
        for _ in range(2):
            for t in values:
                t.add_(1)
    save(values, args.out)
    say("done", status=acb.status().as_dict())


if __name__ == "__main__":
    main()
