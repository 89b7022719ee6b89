"""A training (or inference) job whose work is compiled with torch.compile,
for acb's tests; it runs the same with and without acb (enable with --acb).

The model keeps tensors that only compiled code writes in segments of their
own (2 MiB and more), so a lost write cannot hide behind a neighbour that an
eager operator marked: the 4 MiB weight of the middle layer and its momentum
buffer (written by the optimizer), BatchNorm1d's running statistics, and a
4 MiB queue buffer updated in forward (MoCo-style).

What is compiled (--compile):
  optstep    @torch.compile def opt_step(): opt.step()      (eager forward/backward)
  model      torch.compile(model)                           (eager optimizer)
  trainstep  the whole step: forward, backward, opt.step()
  infer      torch.compile(model.eval()) under torch.no_grad(): nothing written but activations
with --mode (default, max-autotune-no-cudagraphs, ...) and --dynamic.

Two ways to run:
  --steps N [--lockstep DIR ...]   N steps with a CPU pause each, then --out gets the results
  --driven                         commands from stdin, one JSON reply each (tests/python/torch_jobs/driven.py):
                                     step       one step; result: its loss (or output sum)
                                     save PATH  what --out gets, now
                                     quit       exit
"""

import argparse
import json
import sys
import time

import torch

import acb
from lockstep import add_sync_arguments, step_done, wait_for_start

WIDTH = 1024  # WIDTH x WIDTH float32 = 4 MiB


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(32, WIDTH)
        self.bn = torch.nn.BatchNorm1d(WIDTH)
        self.fc2 = torch.nn.Linear(WIDTH, WIDTH)
        self.fc3 = torch.nn.Linear(WIDTH, 10)
        self.register_buffer("queue", torch.zeros(WIDTH * WIDTH))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc2(torch.relu(self.bn(self.fc1(x)))))
        if self.training:
            with torch.no_grad():
                self.queue.mul_(0.5).add_(h.mean())
        return self.fc3(h)


class Job:
    def __init__(self, args) -> None:
        torch.manual_seed(args.seed)
        self.model = Net()
        self.generator = torch.Generator().manual_seed(args.seed + 1)
        self.what = args.compile
        self.losses = []
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        options = {"mode": args.mode, "dynamic": True if args.dynamic else None}
        if self.what == "optstep":
            opt = self.opt

            @torch.compile(**options)
            def opt_step() -> None:
                opt.step()

            self.opt_step = opt_step
        elif self.what == "model":
            self.model = torch.compile(self.model, **options)
        elif self.what == "trainstep":
            self.train_step = torch.compile(self._train_step, **options)
        elif self.what == "infer":
            self.model.eval()
            self.model = torch.compile(self.model, **options)
        else:
            raise SystemExit(f"unknown --compile {self.what!r}")

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss

    def step(self) -> float:
        x = torch.randn(16, 32, generator=self.generator)
        y = torch.randint(0, 10, (16,), generator=self.generator)
        if self.what == "infer":
            with torch.no_grad():
                loss = self.model(x).sum()
        elif self.what == "trainstep":
            loss = self.train_step(x, y)
        else:
            loss = torch.nn.functional.cross_entropy(self.model(x), y)
            self.opt.zero_grad()
            loss.backward()
            if self.what == "optstep":
                self.opt_step()
            else:
                self.opt.step()
        loss = loss.detach().clone()
        self.losses.append(loss)
        return float(loss)

    def tensors(self) -> dict:
        state = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        for i, buffers in enumerate(self.opt.state.values()):
            state.update({f"opt.{i}.{k}": v for k, v in buffers.items() if isinstance(v, torch.Tensor)})
        state["losses"] = torch.stack(self.losses) if self.losses else torch.zeros(0)
        return state

    def save(self, path: str) -> None:
        """The losses, parameters, buffers and optimizer state, for comparison with another run."""
        with acb.region():  # torch.save reads storages directly, outside operators
            torch.save({k: v.detach().clone() for k, v in self.tensors().items()}, path)


def cpu_phase(ms: float) -> None:
    """Work that uses no tensors: the device is idle meanwhile."""
    end = time.monotonic() + ms / 1000.0
    state = 12345
    while time.monotonic() < end:
        state = (state * 1103515245 + 12345) % 2147483648


def driven(job: Job) -> None:
    def reply(event: str, result) -> None:
        print(json.dumps({"event": event, "result": result, "status": acb.status().as_dict()}), flush=True)

    reply("ready", None)
    for line in sys.stdin:
        command = line.split()
        if not command:
            continue
        if command[0] == "step":
            reply("step", job.step())
        elif command[0] == "save":
            job.save(command[1])
            reply("save", None)
        elif command[0] == "quit":
            break
        else:
            raise SystemExit(f"unknown command {command[0]!r}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--acb", action="store_true", help="acb.enable() first (acb run does it by itself)")
    p.add_argument("--compile", default="optstep", choices=["optstep", "model", "trainstep", "infer"])
    p.add_argument("--mode", default="default")
    p.add_argument("--dynamic", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--driven", action="store_true")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--cpu-ms", type=float, default=20.0)
    p.add_argument("--out")
    p.add_argument("--status")
    add_sync_arguments(p)
    args = p.parse_args()

    torch.set_num_threads(1)
    if args.acb:
        acb.enable()
    job = Job(args)
    if args.driven:
        driven(job)
        return
    wait_for_start(args)
    for step in range(args.steps):
        job.step()
        cpu_phase(args.cpu_ms)
        if args.lockstep:
            step_done(args.lockstep, step, args.lockstep_jobs)
    job.save(args.out)
    if args.status:
        with open(args.status, "w") as f:
            json.dump({"acb": acb.status().as_dict()}, f)


if __name__ == "__main__":
    main()
