"""A job whose allocations fragment the arena, for acb's out-of-memory tests.

Beside 20 MiB of state (2 MiB pieces), the first step sets the peak with one
50 MiB temporary (70 MiB); later steps carve 20 MiB pieces into 8 + 8 MiB,
free the first 8 of each and then need 16 MiB, which no hole holds: the
arena must map a segment beyond the earlier peak (76 MiB), which still fits
an 84 MiB device alone. Two copies on such a device must grow while the
other's memory is there, asking the broker for the real shortfall.
Fixed seeds and one thread: the results are the same with or without acb.
Saves a checksum tensor per step with torch.save and, when acb is enabled,
acb.status() as JSON.

    python frag_job.py --out result.pt [--status status.json] [--steps 6] [--seed 0]
"""

import argparse
import json

import torch

import acb
from lockstep import add_sync_arguments, step_done, wait_for_start

MIB_FLOATS = (1 << 20) // 4


def mib(n: float, fill: torch.Tensor) -> torch.Tensor:
    """A tensor of n MiB (float32) computed from `fill` by operators."""
    out = torch.empty(int(n * MIB_FLOATS))
    out.view(-1, fill.numel()).copy_(fill)  # broadcast: no temporary as large as `out`
    return out


def step(state: list, k: int) -> torch.Tensor:
    seed = state[k % len(state)][:1024] * (k + 1) + 0.5
    sums = []
    if k == 0:
        # Wide: one large temporary sets the peak (state + 50 MiB).
        wide = mib(50, seed)
        sums.append(wide.sum())
        del wide
    else:
        # Fragmented: carve 20 MiB pieces into 8 + 8 (+ 4 left), free the
        # first 8 of each, then need 16 MiB: no hole fits, and the arena
        # must map a new segment beyond the earlier peak.
        kept = []
        for j in range(2):
            carve = mib(20, seed + j)
            sums.append(carve.sum())
            del carve
            first, second = mib(8, seed - j), mib(8, seed * 3 + j)
            sums.append(first.sum() - second.sum())
            del first
            kept.append(second)
        small = [mib(0.5, seed - j) for j in range(4)]  # small-segment traffic in between
        sums.extend(t.sum() for t in small)
        del small
        big = mib(15.5, seed * 2)  # rounds up to a 16 MiB segment
        sums.append(big.sum() + sum(t.sum() for t in kept))
        del big, kept
    total = torch.stack(sums).sum() / 1e9
    for piece in state:
        piece.add_(total).tanh_()  # bounded: no overflow over many steps
    return torch.stack(sums).sum().reshape(1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--status")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    add_sync_arguments(p)
    args = p.parse_args()

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(args.seed)
    # 20 MiB live across steps, in 2 MiB segments: an eviction can take part of it.
    state = [torch.randn(2 * MIB_FLOATS, generator=generator) for _ in range(10)]
    wait_for_start(args)
    checks = []
    for k in range(args.steps):
        checks.append(step(state, k))
        if args.lockstep:
            step_done(args.lockstep, k, args.lockstep_jobs)
    with acb.region():  # torch.save reads storages directly, outside operators
        torch.save({"checks": torch.stack(checks).clone(), "state": torch.stack(state).clone()}, args.out)
    if args.status:
        with open(args.status, "w") as f:
            json.dump({"acb": acb.status().as_dict()}, f)


if __name__ == "__main__":
    main()
