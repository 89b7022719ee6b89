"""One rank of a DistributedDataParallel training job (gloo) for acb's tests
and benchmarks, started with the environment torchrun gives its ranks (RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT; LOCAL_RANK, LOCAL_WORLD_SIZE and
TORCHELASTIC_RUN_ID are read by acb, not here).

Runs the same with and without acb: fixed seeds (the model's the same on every
rank, each rank's batches its own), SGD with momentum, a CPU phase after every
step, one thread. Every rank saves its losses and final weights with
torch.save (DDP keeps them equal on all ranks), and, when acb is enabled,
acb.status() as JSON.

    python ddp_job.py --out result.pt [--status status.json] [--steps 6] [--seed 0] [--cpu-ms 30]
                      [--wait-ms 0] [--barrier DIR] [--lockstep DIR --lockstep-jobs N]
"""

import argparse
import json
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import acb
from lockstep import add_sync_arguments, after_step, wait_for_start
from train_job import build, cpu_phase


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--status")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu-ms", type=float, default=30.0)
    add_sync_arguments(p)
    args = p.parse_args()

    torch.set_num_threads(1)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world_size)
    torch.manual_seed(args.seed)
    model = DistributedDataParallel(build("mlp"))  # broadcasts rank 0's state (C++ collectives)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(args.seed * 1000 + rank + 1)
    wait_for_start(args)
    losses = []
    started = time.monotonic()
    for step in range(args.steps):
        x = torch.randn(64, 256, generator=generator)
        y = torch.randint(0, 10, (64,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()  # the reducer all-reduces gradient buckets from C++, waited for at its end
        optimizer.step()
        losses.append(loss.detach().clone())
        cpu_phase(args.cpu_ms)
        after_step(args, step)
    ended = time.monotonic()
    with acb.region():  # torch.save reads storages directly, outside operators
        state = {k: v.clone() for k, v in model.module.state_dict().items()}
        torch.save({"losses": torch.stack(losses), "state": state}, args.out)
    if args.status:
        with open(args.status, "w") as f:
            json.dump({"started": started, "ended": ended, "elapsed_s": ended - started,
                       "acb": acb.status().as_dict()}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
