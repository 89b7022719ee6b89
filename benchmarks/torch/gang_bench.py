"""Gangs: two 2-rank DistributedDataParallel jobs (gloo) and two single-device
training jobs on two emulated devices that hold one working set each, every
job with CPU phases and waits (data, users) between its steps.

- sequential: the schedule without sharing that keeps both devices busiest:
  a 2-rank job needs both devices, so the two jobs run one after the other,
  and the two single jobs side by side, one per device; each measured alone
  without acb in this run (its loop time), so
    sequential = ddp_a + ddp_b + max(single_0, single_1);
- acb: all six processes at once under acb (makespan = last loop end - first
  loop start), the ranks of each job granted their devices together.

The run fails if acb made no offload (the devices would not have been shared
under pressure) or a job's result differs from its run alone.

FIGURE gang_makespan_ratio (acb makespan / sequential; below 1: acb is faster)
FIGURE gang_sequential_makespan_s, gang_acb_makespan_s, gang_offloads, gang_switches
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench_common import JOBS, ON_CUDA, Broker, figure, job_cmd, plain_env, run_all, status

sys.path.insert(0, str(JOBS))
from torchrun_env import free_port, torchrun_env  # noqa: E402

STEPS = "12"
PHASES = ("--cpu-ms", "10", "--wait-ms", "120")
DDP_JOBS = {"ddp_a": "3", "ddp_b": "4"}  # name -> seed
SINGLE_JOBS = {"single_0": "5", "single_1": "6"}
CAPACITY = "32MiB"  # a DDP rank keeps about 20 MiB, a single MLP job about 19
BROKER_FLAGS = ("--quantum-ms", "100", "--aging-ms", "300", "--quantum-deadline-ms", "2000")


def commands(work: Path, label: str, names: list) -> tuple:
    """The (name, command, device, extra environment) of each process of the jobs `names`."""
    barrier = Path(tempfile.mkdtemp(dir=work, prefix="barrier-"))
    out = []
    for name in names:
        if name in DDP_JOBS:
            port = free_port()
            for rank in range(2):
                argv = job_cmd("ddp_job.py", "--seed", DDP_JOBS[name], "--steps", STEPS, *PHASES,
                               "--barrier", str(barrier), "--out", str(work / f"{label}-{name}.{rank}.pt"),
                               "--status", str(work / f"{label}-{name}.{rank}.json"))
                out.append((f"{name}.{rank}", argv, rank, torchrun_env(rank, 2, port)))
        else:
            argv = job_cmd("train_job.py", "--model", "mlp", "--seed", SINGLE_JOBS[name], "--steps", STEPS, *PHASES,
                           "--barrier", str(barrier), "--out", str(work / f"{label}-{name}.pt"),
                           "--status", str(work / f"{label}-{name}.json"))
            out.append((name, argv, int(name[-1]), {}))
    return out, barrier


def run(work: Path, label: str, names: list, broker=None) -> list:
    procs, barrier = commands(work, label, names)
    envs = [{**(broker.env(device, ACB_NAME=name) if broker else plain_env()), **extra}
            for name, _, device, extra in procs]
    run_all([argv for _, argv, _, _ in procs], envs, barrier=barrier)
    return [status(work / f"{label}-{name}.json") for name, _, _, _ in procs]


def loop_s(statuses: list) -> float:
    return max(s["ended"] for s in statuses) - min(s["started"] for s in statuses)


def same_results(work: Path) -> None:
    import torch

    for path in sorted(work.glob("acb-*.pt")):
        alone = torch.load(work / path.name.replace("acb-", "alone-", 1))
        shared = torch.load(path)
        if not torch.equal(alone["losses"], shared["losses"]):
            raise SystemExit(f"benchmarks/torch: {path.name}'s losses differ from its run alone")
        for key, tensor in alone["state"].items():
            if not torch.equal(tensor, shared["state"][key]):
                raise SystemExit(f"benchmarks/torch: {path.name}'s {key} differs from its run alone")


def main() -> None:
    if ON_CUDA:
        raise SystemExit("benchmarks/torch: gang_bench.py needs two devices: emulated only")
    work = Path(tempfile.mkdtemp(prefix="acb-gang-"))
    alone = {name: loop_s(run(work, "alone", [name])) for name in [*DDP_JOBS, *SINGLE_JOBS]}
    sequential = sum(alone[name] for name in DDP_JOBS) + max(alone[name] for name in SINGLE_JOBS)

    broker = Broker(CAPACITY, *BROKER_FLAGS, devices=2)
    try:
        shared = run(work, "acb", [*DDP_JOBS, *SINGLE_JOBS], broker)
    finally:
        broker.close()
    same_results(work)
    offloads = sum(s["acb"]["offloads"] for s in shared)
    if offloads == 0:
        raise SystemExit("benchmarks/torch: the gang run made no offload: it measured no sharing under pressure")
    makespan = loop_s(shared)
    figure("gang_sequential_makespan_s", sequential, "s")
    figure("gang_acb_makespan_s", makespan, "s")
    figure("gang_makespan_ratio", makespan / sequential, "ratio")
    figure("gang_offloads", offloads, "count")
    figure("gang_switches", sum(s["acb"]["switches"] for s in shared), "count")


if __name__ == "__main__":
    main()
