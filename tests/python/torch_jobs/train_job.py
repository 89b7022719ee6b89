"""A small training job for acb's end-to-end tests and benchmarks.

Runs the same with and without acb (nothing here depends on it being
enabled): fixed seeds, SGD with momentum, a CPU phase after every step, one
thread. Saves the losses and final weights with torch.save, and, when acb is
enabled, acb.status() as JSON.

    python train_job.py --out result.pt [--status status.json] [--model mlp|cnn]
                        [--steps 8] [--seed 0] [--cpu-ms 30] [--wait-ms 0] [--foreach]

--foreach makes SGD update all parameters with the _foreach_* operators
(tensor-list arguments, as it does by default on CUDA) instead of one
parameter at a time.
"""

import argparse
import json
import time

import torch

import acb
from lockstep import add_sync_arguments, after_step, wait_for_start


def build(model: str) -> torch.nn.Module:
    if model == "mlp":
        return torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                                   torch.nn.ReLU(), torch.nn.Linear(1024, 10))
    if model == "cnn":
        return torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                   torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                   torch.nn.Flatten(), torch.nn.Linear(64 * 8 * 8, 256), torch.nn.ReLU(),
                                   torch.nn.Linear(256, 10))
    raise SystemExit(f"unknown model {model!r}")


def batch(model: str, generator: torch.Generator):
    x = torch.randn(64, 256, generator=generator) if model == "mlp" else torch.randn(16, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (x.shape[0],), generator=generator)
    return x, y


def cpu_phase(ms: float) -> None:
    """Work that uses no tensors (data preparation, logging): the device is idle meanwhile."""
    end = time.monotonic() + ms / 1000.0
    state = 12345
    while time.monotonic() < end:
        state = (state * 1103515245 + 12345) % 2147483648


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--status")
    p.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu-ms", type=float, default=30.0)
    p.add_argument("--foreach", action="store_true", help="SGD with the _foreach_* (tensor-list) operators")
    add_sync_arguments(p)
    args = p.parse_args()

    torch.set_num_threads(1)
    if args.device != "cpu":
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    model = build(args.model).to(args.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=args.foreach)
    generator = torch.Generator().manual_seed(args.seed + 1)
    wait_for_start(args)
    losses = []
    gpu_s = 0.0  # time in the steps' operators (the device's share of the work)
    started = time.monotonic()
    for step in range(args.steps):
        step_started = time.monotonic()
        x, y = (t.to(args.device) for t in batch(args.model, generator))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach().clone())
        gpu_s += time.monotonic() - step_started
        cpu_phase(args.cpu_ms)
        after_step(args, step)
    ended = time.monotonic()
    with acb.region():  # torch.save reads storages directly, outside operators
        state = {k: v.cpu() for k, v in model.state_dict().items()}
        torch.save({"losses": torch.stack(losses).cpu(), "state": state}, args.out)
    if args.status:
        with open(args.status, "w") as f:
            json.dump({"started": started, "ended": ended, "elapsed_s": ended - started, "gpu_s": gpu_s,
                       "acb": acb.status().as_dict()}, f)


if __name__ == "__main__":
    main()
