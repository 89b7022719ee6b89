"""A DataLoader with forked workers over a TensorDataset made in this process,
run with or without acb; prints one JSON line: the checksum of every batch
(in order) and acb.status().

  loader_job.py OUT_JSON [--acb] [--persistent] [--epochs N] [--sync DIR]
                [--seconds S]

Each epoch iterates the whole loader (2 workers, fork, pin_memory when
persistent) and then changes the dataset in place (add_ 1), so workers
forked later see other data than workers forked earlier (persistent workers
keep what they forked with, as without acb). With --sync DIR, before each
epoch the job writes DIR/ready.<epoch> and waits (bounded) for DIR/go.<epoch>,
so a test can force an offload right before the workers fork. With
--seconds S the job repeats epochs until S seconds have passed (the stress
variant; checksums then cover a varying number of epochs, so the test
compares each epoch with the solo run's epoch of the same number).
"""

import argparse
import hashlib
import json
import os
import sys
import time

import torch
from torch.utils.data import DataLoader, TensorDataset


def wait_for(path: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"loader_job: {path} did not appear within {timeout_s} s")
        time.sleep(0.005)  # polling a file the test writes; no tensor work here


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--acb", action="store_true")
    p.add_argument("--persistent", action="store_true")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--sync")
    p.add_argument("--seconds", type=float, default=0.0)
    args = p.parse_args()
    if args.acb:
        import acb

        acb.enable()
    torch.manual_seed(0)
    features = torch.randn(3072, 256)   # 3 MiB
    labels = torch.arange(3072) % 10
    dataset = TensorDataset(features, labels)
    loader = DataLoader(dataset, batch_size=64, num_workers=2, multiprocessing_context="fork",
                        persistent_workers=args.persistent, pin_memory=args.persistent)
    epochs = []
    start = time.monotonic()
    epoch = 0
    while epoch < args.epochs or (args.seconds and time.monotonic() - start < args.seconds):
        if args.sync:
            open(os.path.join(args.sync, f"ready.{epoch}"), "w").close()
            wait_for(os.path.join(args.sync, f"go.{epoch}"))
        sums = []
        for x, y in loader:
            sums.append(hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:16])
        epochs.append(sums)
        features.add_(1)
        epoch += 1
    if args.sync:
        open(os.path.join(args.sync, "done"), "w").close()
    out = {"epochs": epochs}
    if args.acb:
        import acb

        out["status"] = acb.status().as_dict()
    with open(args.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    sys.exit(main())
