"""One inference service of the switch benchmark (switch_bench.py runs it).

A small transformer decoder (pre-norm layers with a causal mask, built here
from DECODER with fixed-seed random weights: nothing is downloaded) answers
requests that arrive as a Poisson process (fixed seed). The launcher gives
every service the same phases, each a window of the shared schedule: in the
solo phase of service i only service i gets requests, in the shared phase
all do. One process serves all phases, so start-up is paid once and solo and
shared latencies come from the same process and model.

Each request, timed from its scheduled arrival (so a request queued behind a
late one counts the wait):
  1. a one-element read of the embedding (the first operator of a forward
     pass): "first op" done;
  2. a one-element read of every parameter: every segment of the model is
     resident, on demand or not: "all resident";
  3. one forward pass over PROMPT tokens, the next token taken: done.
Whether the request switched the device onto this process is read from
acb.status()'s switch count around it. acb's memory counters are read at the
start and end of each phase window.

    python switch_service.py --index I --services N --barrier DIR --status OUT
                             [--requests R] [--interval-ms MS] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from typing import Dict, List

import torch

import acb

DECODER = {"vocab": 2048, "dim": 256, "heads": 4, "ffn": 1024, "layers": 6}
PROMPT = 8
WARMUP = 3  # the first requests of a phase: the device moves onto the phase's services
COUNTERS = ("switches", "offloads", "offload_copied_bytes", "skipped_clean_bytes", "restored_bytes")


class Decoder(torch.nn.Module):
    def __init__(self, vocab: int, dim: int, heads: int, ffn: int, layers: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        layer = torch.nn.TransformerEncoderLayer(dim, heads, ffn, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(dim)
        self.head = torch.nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.embed(tokens), mask=mask, is_causal=True)
        return self.head(self.norm(x))


def arrivals_s(seed: int, requests: int, interval_ms: float) -> List[float]:
    """Offsets of a Poisson process's first `requests` arrivals from its phase's start (fixed seed)."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(requests):
        t += rng.expovariate(1000.0 / interval_ms)
        out.append(t)
    return out


def phase_windows(services: int, requests: int, interval_ms: float, seed: int) -> List[tuple]:
    """(name, start offset, length, requesting services) of every phase: solo for each service, then shared."""
    span = max(arrivals_s(seed + i, requests, interval_ms)[-1] for i in range(services)) + 1.0
    phases = [(f"solo{i}", [i]) for i in range(services)] + [("shared", list(range(services)))]
    return [(name, k * span, span, who) for k, (name, who) in enumerate(phases)]


def counters() -> Dict[str, int]:
    s = acb.status().as_dict()
    return {k: s[k] for k in COUNTERS}


def wait_for_go(barrier: str) -> float:
    """Says ready, then waits (bounded) for the launcher's go file; returns the schedule's origin."""
    with open(os.path.join(barrier, f"{os.getpid()}.ready"), "w"):
        pass
    go = os.path.join(barrier, "go")
    deadline = time.monotonic() + 300
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit(f"switch_service: no 'go' in {barrier} within 300 s")
        time.sleep(0.01)  # polling the launcher's file; no tensor work here
    with open(go) as f:
        return float(f.read())


def sleep_until(t: float) -> None:
    if t > time.monotonic():
        time.sleep(t - time.monotonic())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--services", type=int, required=True)
    p.add_argument("--barrier", required=True)
    p.add_argument("--status", required=True)
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--interval-ms", type=float, default=90.0)
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args()
    if not acb.is_enabled():
        raise SystemExit("switch_service: acb is not enabled (run it with ACB_ENABLE=1 and a broker)")

    torch.set_num_threads(1)
    torch.manual_seed(1000 + args.index)
    model = Decoder(**DECODER).eval()
    params = list(model.parameters())
    mask = torch.nn.Transformer.generate_square_subsequent_mask(PROMPT)
    generator = torch.Generator().manual_seed(2000 + args.index)
    windows = phase_windows(args.services, args.requests, args.interval_ms, args.seed)
    prompts = [torch.randint(0, DECODER["vocab"], (1, PROMPT), generator=generator) for _ in range(args.requests)]
    with torch.no_grad():
        model(prompts[0], mask)  # first touch of every buffer torch keeps
    param_bytes = sum(t.numel() * t.element_size() for t in params)

    origin = wait_for_go(args.barrier)
    arrivals = arrivals_s(args.seed + args.index, args.requests, args.interval_ms)
    phases = []
    for name, start, length, who in windows:
        sleep_until(origin + start)
        before = counters()
        requests = []
        if args.index in who:
            for k, offset in enumerate(arrivals):
                arrival = origin + start + offset
                sleep_until(arrival)
                switches = acb.status().switches
                with torch.no_grad():
                    params[0].view(-1)[:1].sum()
                    first = time.monotonic()
                    for t in params[1:]:
                        t.view(-1)[:1].sum()
                    resident = time.monotonic()
                    model(prompts[k], mask)[:, -1].argmax(-1)
                done = time.monotonic()
                requests.append({"latency_ms": (done - arrival) * 1000, "first_op_ms": (first - arrival) * 1000,
                                 "all_resident_ms": (resident - arrival) * 1000,
                                 "switched": acb.status().switches > switches, "warmup": k < WARMUP})
        sleep_until(origin + start + length)
        after = counters()
        phases.append({"name": name, "requests": requests, "counters": {k: after[k] - before[k] for k in COUNTERS}})
    status = acb.status().as_dict()
    with open(args.status, "w") as f:
        json.dump({"phases": phases, "param_bytes": param_bytes,
                   "reserved_bytes_peak": status["reserved_bytes_peak"]}, f)


if __name__ == "__main__":
    main()
