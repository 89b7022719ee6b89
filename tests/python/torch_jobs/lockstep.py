"""Lock-step rounds between jobs that share a device, through files only.

After its step k a job writes `<pid>.<k>` into the directory and waits
(bounded, polling the directory) until `jobs` files for step k exist. So no
job starts step k+1 before every job has finished step k: each round, every
job's working set has been needed on the device, whatever the scheduling of
the machine, and jobs whose working sets do not fit together must have
evicted each other. It changes only when steps run, never what they compute.
"""

import os
import time


def step_done(directory: str, step: int, jobs: int, timeout_s: float = 300.0) -> None:
    with open(os.path.join(directory, f"{os.getpid()}.{step}"), "w"):
        pass
    deadline = time.monotonic() + timeout_s
    suffix = f".{step}"
    while sum(1 for name in os.listdir(directory) if name.endswith(suffix)) < jobs:
        if time.monotonic() > deadline:
            raise SystemExit(f"lock-step: not all {jobs} jobs finished step {step} within {timeout_s} s")
        time.sleep(0.005)  # polling files the other jobs write; no tensor work here


def after_step(args, step: int) -> None:
    """What every job does after its step's own CPU phase: its wait (--wait-ms), then
    the lock-step round (--lockstep)."""
    time.sleep(args.wait_ms / 1000.0)
    if args.lockstep:
        step_done(args.lockstep, step, args.lockstep_jobs)


def wait_for_go(directory: str, timeout_s: float = 300.0) -> None:
    """Says this job is ready, then waits (bounded) until the launcher says go."""
    with open(os.path.join(directory, f"{os.getpid()}.ready"), "w"):
        pass
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(os.path.join(directory, "go")):
        if time.monotonic() > deadline:
            raise SystemExit(f"no 'go' in {directory} within {timeout_s} s")
        time.sleep(0.01)


def add_sync_arguments(p) -> None:
    """The device and start/step synchronisation options every test job takes."""
    p.add_argument("--device", default="cpu", help="cpu (the emulated device under acb) or cuda")
    p.add_argument("--start-at", type=float, default=0.0,
                   help="time.monotonic() at which to start the loop (lines up jobs started together)")
    p.add_argument("--barrier", help="directory: write <pid>.ready there, start once 'go' appears")
    p.add_argument("--lockstep", help="directory: after each step wait until --lockstep-jobs jobs did it too")
    p.add_argument("--lockstep-jobs", type=int, default=1)
    p.add_argument("--wait-ms", type=float, default=0.0,
                   help="after each step's CPU phase, sleep: waiting for data or a user, neither CPU nor device busy")


def wait_for_start(args) -> None:
    """Waits for the launcher's barrier (--barrier) and then until --start-at."""
    if args.barrier:
        wait_for_go(args.barrier)
    if args.start_at > time.monotonic():
        time.sleep(args.start_at - time.monotonic())  # interpreter start-up varies by seconds
