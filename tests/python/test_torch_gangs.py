"""Multi-rank jobs under acb on two emulated devices: two DistributedDataParallel
jobs (gloo, two ranks each, CPU phases between steps) and one single-device
training job share devices that hold one working set each, started with the
environment torchrun gives its ranks (docs/scheduling.md, "Gangs").

Each rank names its job in hello (TORCHELASTIC_RUN_ID for one job, MASTER_ADDR:
MASTER_PORT for the other, whose run id is torchrun's default "none"), so the
broker grants a job's two devices together. Granted one by one, each job could
hold one device and wait in its first all-reduce for the other's. Every job
must finish, the devices must really have changed hands with memory moved out
and back, every grant of a rank must come with its partner's in the same
decision or while its partner holds, and every result must be bit-identical to the job run without acb.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402
from torchrun_env import free_port, torchrun_env  # noqa: E402

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

# A DDP rank keeps about 20 MiB resident (weights, gradients, momentum, the
# reducer's buckets), the single MLP job about 19: no two fit one device.
CAPACITY = "32MiB"
BROKER_FLAGS = ("--aging-ms", "300", "--quantum-ms", "100", "--quantum-deadline-ms", "2000")
STEPS = "6"


def _jobs(tmp: Path) -> dict:
    """name -> (script, args, extra environment, broker device) of every process."""
    run_id = f"ddp-a-{uuid.uuid4().hex[:8]}"
    ports = {"ddp_a": free_port(), "ddp_b": free_port()}
    jobs = {}
    for job, seed, rid in (("ddp_a", "3", run_id), ("ddp_b", "4", "none")):
        for rank in range(2):
            jobs[f"{job}.{rank}"] = ("ddp_job.py", ("--seed", seed, "--steps", STEPS),
                                     torchrun_env(rank, 2, ports[job], rid), rank)
    jobs["single"] = ("train_job.py", ("--model", "mlp", "--seed", "5", "--steps", STEPS), {}, 0)
    return jobs


def _run(root: Path, jobs: dict, tmp: Path, env_of, command_of) -> None:
    tmp.mkdir()
    barrier, rounds = tmp / "barrier", tmp / "rounds"
    barrier.mkdir()
    rounds.mkdir()
    procs = []
    for name, (script, args, extra, device) in jobs.items():
        # Lock-step rounds across all processes: each round every device was
        # needed by two working sets that do not fit together.
        argv = h.job(script, *args, "--out", str(tmp / f"{name}.pt"), "--status", str(tmp / f"{name}.json"),
                     "--barrier", str(barrier), "--lockstep", str(rounds), "--lockstep-jobs", str(len(jobs)))
        log = tmp / f"{name}.log"
        procs.append((h.start(command_of(argv), {**env_of(device), **extra, "ACB_NAME": name}, log), log))
    h.release_barrier(barrier, len(jobs), procs)
    for proc, log in procs:
        h.finish(proc, log, timeout_s=150)


def _gang_grants_come_together(slices: list) -> None:
    """Every lease of a rank began in the same decision as its partner's, or while
    its partner held (back into the gang's lease, docs/scheduling.md, "Gangs")."""
    leases = defaultdict(list)  # (job, rank) -> [(start_us, end_us or None)]
    for s in slices:
        if s["name"].startswith("ddp_"):
            job, rank = s["name"].split(".")
            leases[(job, int(rank))].append((s["start_us"], s["end_us"]))
    together = 0
    for (job, rank), mine in leases.items():
        partner = leases[(job, 1 - rank)]
        assert mine and partner, f"{job}: a rank never held: {dict(leases)}"
        for start, _ in mine:
            if any(p_start == start for p_start, _ in partner):
                together += 1
                continue
            assert any(p_start < start and (p_end is None or start < p_end) for p_start, p_end in partner), \
                f"{job} rank {rank} was granted at {start} us without its partner: {mine} / {partner}"
    assert together >= 4, f"the gangs were granted together only {together} times: {dict(leases)}"


def test_two_ddp_jobs_and_a_single_job_share_two_emulated_devices(broker_factory, tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    root = h.require_package()
    jobs = _jobs(tmp_path)
    base = h.base_env(root)
    _run(root, jobs, tmp_path / "alone", lambda device: dict(base), lambda argv: [sys.executable, *argv])

    devices = [h.device_spec(CAPACITY), h.device_spec(CAPACITY)]
    broker = broker_factory("--device", devices[0], "--device", devices[1], *BROKER_FLAGS)
    try:
        _run(root, jobs, tmp_path / "acb",
             lambda device: h.acb_env(root, broker, devices[device], ACB_DEVICE=str(device)),
             lambda argv: h.acb_run("training", argv))
    except AssertionError as e:
        with broker.admin() as admin:  # who held and waited where, to tell a hang from a crash
            raise AssertionError(f"{e}\nbroker status: {json.dumps(admin.request({'op': 'status'}), indent=1)}") from e
    with broker.admin() as admin:
        slices = admin.request({"op": "trace"})["slices"]

    for name in jobs:
        h.assert_same_tensors(torch.load(tmp_path / "alone" / f"{name}.pt"),
                              torch.load(tmp_path / "acb" / f"{name}.pt"), name)
    status = {name: h.load_status(tmp_path / "acb" / f"{name}.json")["acb"] for name in jobs}
    print(json.dumps(status, indent=1))
    for name, s in status.items():
        assert s["enabled"], f"{name}: acb was not enabled by acb run: {s}"
    assert sum(s["offloads"] for s in status.values()) >= len(jobs), status
    assert sum(s["restored_bytes"] for s in status.values()) > 0, status
    _gang_grants_come_together(slices)
