"""Takes the device and keeps it: enables acb, makes a tensor, then holds the
device inside acb.region() until a line arrives on stdin, printing
JSON lines: {"event": "holding", "t": ...} then {"event": "released", "t": ...}.
Times are time.monotonic() (CLOCK_MONOTONIC, shared by the machine's processes)."""

import argparse
import json
import sys
import time

import torch

import acb


def say(event: str) -> None:
    print(json.dumps({"event": event, "t": time.monotonic()}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--priority", default="inference")
    args = p.parse_args()
    acb.enable(priority=args.priority)
    x = torch.ones(1 << 20)
    with acb.region():
        x.add_(1)
        say("holding")
        sys.stdin.readline()  # until told (or killed)
        say("released")


if __name__ == "__main__":
    main()
