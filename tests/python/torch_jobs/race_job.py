"""One side of the eager offload race stress test (test_torch_race.py).

  busy N      increments the first 4 MiB of a 24 MiB float32 tensor N times
              (`big[:2**20].add_(1.0)`, no idle gap), then checks every
              element: the first 2**20 must be N and the rest 0; prints
              {"event": "done", "short": <increments lost>, "bad": <any
              element wrong>, "status": acb.status()}
  read PATH   until the file PATH exists (at most 300 s): reads an element
              of its own tensor through an operator (item()) and the whole
              tensor without one (tolist(), and torch.tensor() of that list,
              which fills its fresh memory without one), with a pause after each, so the
              device changes hands between the two jobs again and again;
              prints {"event": "done", "reads": <count>, "status": ...}

Both print {"event": "ready"} once acb is enabled and their memory allocated,
then wait for the file named by --go (the test lines the two jobs up).
"""

import argparse
import json
import os
import time

import torch

import acb

BUSY_ELEMENTS = 6 << 20   # 24 MiB of float32
BUSY_TOUCHED = 1 << 20    # the first 4 MiB are incremented
READ_ELEMENTS = 2 << 20   # 8 MiB of float32: with the busy job's 24 MiB, over the device's 30
WAIT_LIMIT_S = 300.0


def wait_for(path: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear within {WAIT_LIMIT_S} s")
        time.sleep(0.01)  # polling a file the test writes


def busy(increments: int, go: str) -> dict:
    big = torch.zeros(BUSY_ELEMENTS)
    print(json.dumps({"event": "ready"}), flush=True)
    wait_for(go)
    for _ in range(increments):
        big[:BUSY_TOUCHED].add_(1.0)
    head = big[:BUSY_TOUCHED]
    tail = big[BUSY_TOUCHED:]
    # Reductions to one element each: no temporary as large as the tensor
    # (the device has no room for one beside the other job).
    short = increments - int(head.min().item())
    over = int(head.max().item()) - increments
    tail_bad = float(tail.max().item()) != 0.0 or float(tail.min().item()) != 0.0
    return {"short": short, "bad": short != 0 or over != 0 or tail_bad}


def read(stop: str, go: str) -> dict:
    t = torch.arange(READ_ELEMENTS, dtype=torch.float32)
    print(json.dumps({"event": "ready"}), flush=True)
    wait_for(go)
    deadline = time.monotonic() + WAIT_LIMIT_S
    reads = 0
    while not os.path.exists(stop):
        if time.monotonic() > deadline:
            raise SystemExit(f"read: {stop} did not appear within {WAIT_LIMIT_S} s")
        if t[12345].item() != 12345.0:
            raise SystemExit("read: t[12345] changed")
        time.sleep(0.02)  # an idle gap: the lease is given back, the busy job takes the device
        values = t.tolist()
        if values[12345] != 12345.0 or values[-1] != float(READ_ELEMENTS - 1):
            raise SystemExit("read: tolist() saw changed values")
        # torch.tensor(list) allocates through an operator and then fills the
        # memory from the list with no operator in flight (longer than the idle gap).
        copy = torch.tensor(values)
        del values
        if copy[12345].item() != 12345.0 or copy[-1].item() != float(READ_ELEMENTS - 1):
            raise SystemExit("read: torch.tensor(list) saw changed values")
        del copy
        time.sleep(0.02)
        reads += 1
    return {"reads": reads}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("busy", "read"))
    parser.add_argument("arg")
    parser.add_argument("--go", required=True)
    args = parser.parse_args()
    acb.enable(priority="training")
    out = busy(int(args.arg), args.go) if args.role == "busy" else read(args.arg, args.go)
    print(json.dumps({"event": "done", **out, "status": acb.status().as_dict()}), flush=True)


if __name__ == "__main__":
    main()
