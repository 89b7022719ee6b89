"""End to end on one device (emulated, or a GPU: marked gpu): broker,
client, op hook, allocator, offload and restore, with real torch jobs started
by `acb run`.

The device's capacity holds one job's working set, not three: two training
jobs (MLP and CNN, SGD with momentum, the MLP's through the tensor-list
_foreach_* operators, CPU phases between steps) and one inference job with
priority must take turns, offloading each other. On a GPU the working sets
are measured first (CUDA libraries such as cuBLAS add to them) and the
capacity is sized from them. Every job's results must be bit-identical to
the same job run alone without acb.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402

torch = pytest.importorskip("torch")

# The jobs keep about 19 (MLP), 27 (CNN) and 6 (inference) MiB resident: the CNN
# fits with neither of the others, so every switch to or from it evicts.
CAPACITY = "32MiB"
BROKER_FLAGS = ("--aging-ms", "300", "--quantum-ms", "100", "--quantum-deadline-ms", "1000")

JOBS = {
    # The MLP's SGD updates through the _foreach_* operators (tensor-list
    # arguments, marked written as lists), the CNN's one parameter at a time.
    "train_mlp": ("training", "train_job.py", ("--model", "mlp", "--seed", "1", "--steps", "12", "--foreach")),
    "train_cnn": ("training", "train_job.py", ("--model", "cnn", "--seed", "2", "--steps", "12")),
    "infer": ("inference", "infer_job.py", ("--requests", "12", "--interval-ms", "50")),
}


def _run_references(root: Path, tmp: Path, device_args: tuple) -> None:
    procs = []
    for name, (_, script, args) in JOBS.items():
        log = tmp / f"{name}.alone.log"
        argv = h.job(script, *args, *device_args, "--out", str(tmp / f"{name}.alone.pt"))
        procs.append((h.start([sys.executable, *argv], h.base_env(root), log), log))
    for proc, log in procs:
        h.finish(proc, log)


def _share(root: Path, tmp_path: Path, broker, env: dict, device_args: tuple, run: str = "acb") -> dict:
    """Runs the jobs together under acb; checks results against the references; returns their statuses.

    The references are in tmp_path; this run's files in tmp_path / run."""
    procs = []
    refs = tmp_path
    tmp_path = tmp_path / run
    tmp_path.mkdir()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    # Lock-step rounds: every job's step k finishes before any job's step k+1
    # starts, so each round all three working sets were needed on the device
    # and, as they do not fit together, someone was evicted and later
    # restored, however the machine schedules the processes.
    rounds = tmp_path / "rounds"
    rounds.mkdir()
    for name, (priority, script, args) in JOBS.items():
        argv = h.job(script, *args, *device_args, "--out", str(tmp_path / f"{name}.acb.pt"),
                     "--status", str(tmp_path / f"{name}.status.json"), "--barrier", str(barrier),
                     "--lockstep", str(rounds), "--lockstep-jobs", str(len(JOBS)))
        log = tmp_path / f"{name}.acb.log"
        procs.append((h.start(h.acb_run(priority, argv), {**env, "ACB_NAME": name}, log), log))
    # Interpreter start-up varies by seconds here: line the jobs' loops up so they really overlap.
    h.release_barrier(barrier, len(JOBS), procs)
    for proc, log in procs:
        h.finish(proc, log, timeout_s=180)
    for name in JOBS:
        expected = torch.load(refs / f"{name}.alone.pt")
        actual = torch.load(tmp_path / f"{name}.acb.pt")
        h.assert_same_tensors(expected, actual, name)
    status = {name: h.load_status(tmp_path / f"{name}.status.json")["acb"] for name in JOBS}
    print(json.dumps(status, indent=1))
    for name, s in status.items():
        assert s["enabled"], f"{name}: acb was not enabled by acb run: {s}"
    return status


def _mean_wait(s: dict) -> float:
    return s["wait_total_ms"] / max(1, s["waits"])


def _assert_turns_and_moves(status: dict) -> None:
    """The device really changed hands, and memory really moved out and back."""
    assert sum(s["switches"] for s in status.values()) >= len(JOBS) + 2, status
    assert sum(s["releases"] for s in status.values()) >= 2, status
    assert sum(s["offloads"] for s in status.values()) >= 1, status
    assert sum(s["restored_bytes"] for s in status.values()) > 0, status


def test_trainers_and_inference_share_one_emulated_device(broker_factory, tmp_path):
    root = h.require_package()
    _run_references(root, tmp_path, ())
    device = h.device_spec(CAPACITY)
    broker = broker_factory("--device", device, *BROKER_FLAGS)
    status = _share(root, tmp_path, broker, h.acb_env(root, broker, device), ())
    _assert_turns_and_moves(status)
    # Inference (higher class, preempts at once) waited less than training.
    train_wait = max(_mean_wait(status["train_mlp"]), _mean_wait(status["train_cnn"]))
    assert _mean_wait(status["infer"]) < train_wait, status


def _one_working_set(peaks: dict) -> int:
    """A capacity that holds the largest working set alone but no two of them
    (the largest plus half the smallest, in 2 MiB granules): every switch to
    or from the largest job evicts."""
    granule = 2 << 20
    capacity = max(peaks.values()) + min(peaks.values()) // 2
    return (capacity + granule - 1) // granule * granule


@pytest.mark.gpu
def test_trainers_and_inference_share_one_gpu(broker_factory, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU and a CUDA build of torch")
    root = h.require_package()
    _run_references(root, tmp_path, ("--device", "cuda"))

    def gpu_env(broker) -> dict:
        env = h.base_env(root)
        env.update({"ACB_TOKEN_DIR": str(broker.token_dir), "ACB_BROKER": f"{broker.host}:{broker.port}"})
        return env

    # On a GPU the working sets are the emulated ones plus what CUDA libraries
    # allocate through torch (cuBLAS workspaces): measure them first, with
    # room for all, then share a capacity that holds one of them.
    roomy = broker_factory("--device", f"gpu0:{torch.cuda.get_device_properties(0).total_memory}", *BROKER_FLAGS)
    measured = _share(root, tmp_path, roomy, gpu_env(roomy), ("--device", "cuda"), run="measure")
    peaks = {name: s["reserved_bytes_peak"] for name, s in measured.items()}
    assert all(peak > 0 for peak in peaks.values()), peaks
    capacity = _one_working_set(peaks)
    print(f"working sets {peaks}: capacity {capacity}")

    broker = broker_factory("--device", f"gpu0:{capacity}", *BROKER_FLAGS)
    status = _share(root, tmp_path, broker, gpu_env(broker), ("--device", "cuda"))
    _assert_turns_and_moves(status)
