"""A fixed-seed randomized adversary: one process interleaves eager in-place
ops (whole tensors and views; unboxed and boxed hook paths), calls of a
compiled function that mutates its input, raw writes inside acb.region(),
tensors freed and allocated again, idle gaps longer than acb's idle gap and
forced yields, and after every step prints a checksum of every tensor. The
schedule depends only on the seed, so a run without acb and a run under acb
beside another process must print the same lines.

    adversary_job.py SEED STEPS       (ACB_ENABLE decides whether acb is on)
Prints one JSON line per step: {"step": k, "op": name, "sums": [...]}, then
{"status": acb.status()} under acb.
"""

import json
import random
import sys
import time

import torch

import acb

#: element counts of the tensors: two share a shape (one compiled graph serves
#: both), some are above 1 MiB (segments of their own), some share segments.
SIZES = [3 << 18, 3 << 18, 5 << 18, 1 << 14, 3 << 16, 1 << 12]


def checksums(tensors, chunk=1 << 16):
    """Sum and sum of squares of each tensor's bits, in chunks (small temporaries:
    the working set stays the tensors themselves)."""
    out = []
    for t in tensors:
        bits = t.view(torch.int32)
        total = squares = 0
        for start in range(0, bits.numel(), chunk):
            v = bits[start:start + chunk].long()
            total += int(v.sum())
            squares += int((v * v).sum())
        out.append([total, squares])
    return out


def main() -> None:
    seed, steps = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    tensors = [torch.rand(n, generator=gen) for n in SIZES]

    @torch.compile(dynamic=False)
    def blend(buf, scale):
        buf.mul_(scale).add_(0.25)
        return buf.sum()

    ops = ["add_", "clamp_min_", "view_mul_", "compiled", "region_write", "realloc", "idle", "yield"]
    weights = [4, 2, 3, 3, 2, 1, 2, 1]
    for step in range(steps):
        op = rng.choices(ops, weights)[0]
        i = rng.randrange(len(tensors))
        t = tensors[i]
        if op == "add_":
            t.add_(rng.choice([0.5, -0.25, 1.0]))
        elif op == "clamp_min_":  # no unboxed kernel: the boxed fallback
            t.clamp_min_(rng.uniform(-0.5, 0.5))
        elif op == "view_mul_":
            a = rng.randrange(t.numel())
            b = rng.randrange(a, t.numel()) + 1
            t[a:b].mul_(rng.choice([0.5, 1.5]))
        elif op == "compiled":
            blend(tensors[rng.randrange(2)], rng.choice([0.5, 0.75]))
        elif op == "region_write":
            a = rng.randrange(t.numel())
            with acb.region():
                t.numpy()[a:a + 1000] = rng.random()
        elif op == "realloc":
            tensors[i] = torch.rand(SIZES[i], generator=gen)
            del t
        elif op == "idle":
            time.sleep(rng.uniform(0.012, 0.03))  # longer than the idle gap: a revoke is honoured here
        elif op == "yield" and acb.is_enabled():
            from acb import _api

            _api._c_module.yield_now()
        print(json.dumps({"step": step, "op": op, "sums": checksums(tensors)}), flush=True)
    if acb.is_enabled():
        print(json.dumps({"status": acb.status().as_dict()}), flush=True)


if __name__ == "__main__":
    main()
