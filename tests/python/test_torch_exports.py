"""Memory read or written outside operators, right after the process's memory
was offloaded: torch.save, pickle, tolist and deepcopy; numpy and DLPack
exports that outlive the call; forked children (os.fork, DataLoader workers)
that must see the memory they forked with and keep their writes to
themselves. Offloads are forced by a second job that needs the device and
asserted from acb.status(); results are compared with values computed
without acb (or a run of the same job without acb)."""

from __future__ import annotations

import json
import os
import pickle
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402
from driven import Driven, driven_env  # noqa: E402

torch = pytest.importorskip("torch")

MIB_FLOATS = 1 << 18  # float32 elements per MiB


def _offloads(job: Driven) -> int:
    return job.do("status")["status"]["offloads"]


def test_save_pickle_tolist_deepcopy_right_after_an_offload(broker_factory, tmp_path):
    env = driven_env(broker_factory, "32MiB", "--quantum-ms", "20")
    job = Driven(env, "training")
    hog = None
    try:
        job.do("grow 8")
        hog = Driven(env, "training")
        expected = [torch.full((8 * MIB_FLOATS,), 1.0)]   # what the job kept, computed without acb
        hog.do("grow 24")                                 # evicts the job
        offloads = _offloads(job)
        assert offloads >= 1
        job.do(f"save {tmp_path / 'kept.pt'}")            # its memory is offloaded when save starts
        h.assert_same_tensors({"0": expected[0]}, {"0": torch.load(tmp_path / "kept.pt")[0]}, "torch.save")
        for command in ("pickle", "listsum", "deepsum"):
            hog.do("touch")                               # evicts the job again
            now = _offloads(job)
            assert now > offloads, f"no offload before {command}"
            offloads = now
            reply = job.do(f"pickle {tmp_path / 'kept.pickle'}" if command == "pickle" else command)
            if command == "pickle":
                with open(tmp_path / "kept.pickle", "rb") as f:
                    h.assert_same_tensors({"0": expected[0]}, {"0": pickle.load(f)[0]}, "pickle")
            else:
                assert reply["result"] == float(8 * MIB_FLOATS), command
    finally:
        job.close()
        if hog is not None:
            hog.close()


@pytest.mark.parametrize("kind", ["numpy", "dlpack"])
def test_export_written_after_its_region_survives_offloads(broker_factory, kind):
    """An exported array outlives the call that made it: its storage stays
    resident through evicts (the rest of the process is offloaded), a write
    through it while the process does not hold the device lands, and once the
    array is gone the storage is offloaded again and its new bytes copied."""
    env = driven_env(broker_factory, "40MiB", "--quantum-ms", "20")
    job = Driven(env, "training")
    hog = None
    n = 8 * MIB_FLOATS
    try:
        job.do("grow 8")                          # kept[0]: exported below
        job.do("grow 8")                          # kept[1]: not exported
        hog = Driven(env, "training")
        hog.do("grow 24")                         # evicts the job: backups of both are current
        assert job.do("keptsum")["result"] == 2.0 * n
        job.do(f"export {kind}")
        offloads = _offloads(job)
        hog.do("touch")                           # evicts the job: all but the exported storage
        s = job.do("status")["status"]
        assert s["offloads"] > offloads, s
        assert s["resident_bytes"] >= 8 << 20, s  # the exported storage stayed
        assert s["offloaded_bytes"] >= 8 << 20, s
        job.do("exportwrite 5")                   # no lease, no region: a raw write
        assert job.do("exportsum")["result"] == 5.0 * n
        hog.do("touch")
        assert job.do("keptsum")["result"] == 5.0 * n + n
        job.do("exportdrop")                      # the storage counts as written from here
        hog.do("grow 8")                          # evicts the job: now the exported storage too
        s = job.do("status")["status"]
        assert s["resident_bytes"] < 8 << 20, s
        reply = job.do("keptsum")                 # restored from the backup just taken
        assert reply["result"] == 5.0 * n + n, reply
    finally:
        job.close()
        if hog is not None:
            hog.close()


def test_job_waiting_for_room_an_export_holds_gets_it_once_the_export_dies(broker_factory):
    """The exported storage cannot be evicted: once an evict released
    nothing the broker asks the exporting job only every 50 ms (without the
    hold-off: thousands of times a second) until the export dies and the job
    says it can give more."""
    env = driven_env(broker_factory, "32MiB", "--quantum-ms", "20")
    job = Driven(env, "training")
    hog = Driven(env, "training")
    try:
        job.do("grow 8")
        job.do("export numpy")
        replies = []
        waiter = threading.Thread(target=lambda: replies.append(hog.do("grow 24")), daemon=True)
        waiter.start()                                # does not fit beside the exported 8 MiB
        deadline = time.monotonic() + 30
        while _evicts(job) < 2:
            assert time.monotonic() < deadline, "the exporting job was not asked to evict"
            time.sleep(0.01)  # polling the job's status
        before = _evicts(job)
        waiter.join(1.0)                              # a second of waiting: asked now and then, no loop
        assert not replies and _evicts(job) - before <= 40, _evicts(job) - before
        job.do("exportdrop")
        waiter.join(30)
        assert replies, "the waiting job did not get the room once the export died"
        assert job.do("status")["status"]["resident_bytes"] < 8 << 20
    finally:
        job.close()
        hog.close()


def _evicts(job: Driven) -> int:
    return job.do("status")["status"]["evicts"]


def test_forked_child_sees_what_it_forked_with_and_keeps_its_writes(broker_factory):
    env = driven_env(broker_factory, "32MiB", "--quantum-ms", "20")
    job = Driven(env, "training")
    hog = None
    n = 4 * MIB_FLOATS
    try:
        job.do("grow 4")
        resident = job.do("forkwrite")["result"]          # forked while resident
        assert resident == {"child_before": n, "child_after": -n, "parent_after": n}
        hog = Driven(env, "training")
        hog.do("grow 24")                                 # evicts the job
        offloads = _offloads(job)
        assert offloads >= 1
        offloaded = job.do("forkwrite")["result"]         # forked while offloaded
        assert offloaded == {"child_before": n, "child_after": -n, "parent_after": n}
    finally:
        job.close()
        if hog is not None:
            hog.close()


def _run_loader(broker_factory, tmp_path: Path, persistent: bool, seconds: float = 0.0) -> None:
    env = driven_env(broker_factory, "24MiB", "--quantum-ms", "20")
    root = h.require_package()
    hog = Driven(env, "training")
    sync = tmp_path / "sync"
    sync.mkdir()
    flags = ["--persistent"] if persistent else []
    if seconds:
        flags += ["--epochs", "1", "--seconds", str(seconds)]
    log = tmp_path / "loader.log"
    out = tmp_path / "acb.json"
    proc = h.start([sys.executable, *h.job("loader_job.py", str(out), "--acb", "--sync", str(sync), *flags)],
                   env, log)
    try:
        hog.do("grow 16")
        epoch = 0
        while not (sync / "done").exists():
            ready = sync / f"ready.{epoch}"
            # The stress variant keeps forcing offloads while batches are loaded.
            _wait_file_or_done(ready, sync / "done", proc, log, hog if seconds else None)
            if (sync / "done").exists():
                break
            hog.do("touch")                    # the loader's memory is offloaded when its workers fork
            (sync / f"go.{epoch}").touch()
            epoch += 1
        h.finish(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        hog.close()
    got = json.loads(out.read_text())
    status = got["status"]
    print(json.dumps(status))
    assert status["offloads"] >= len(got["epochs"]), status
    alone_out = tmp_path / "alone.json"
    alone_flags = ["--persistent"] if persistent else []
    h.run_alone(root, [*h.job("loader_job.py", str(alone_out), "--epochs", str(len(got["epochs"])),
                              *alone_flags)], tmp_path / "alone.log")
    expected = json.loads(alone_out.read_text())["epochs"]
    for e, (want, have) in enumerate(zip(expected, got["epochs"])):
        differ = sum(a != b for a, b in zip(want, have))
        assert differ == 0 and len(want) == len(have), f"epoch {e}: {differ} of {len(want)} batch checksums differ"


def _wait_file_or_done(path: Path, done: Path, proc, log: Path, hog) -> None:
    """Waits (bounded) for `path` or `done`; with a hog, forces offloads meanwhile."""
    deadline = time.monotonic() + 120.0
    while not path.exists() and not done.exists():
        assert proc.poll() is None or done.exists(), \
            f"loader exited {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}"
        assert time.monotonic() < deadline, f"{path.name} did not appear within 120 s"
        if hog is not None:
            hog.do("touch")
        else:
            time.sleep(0.01)  # polling a file the job writes


@pytest.mark.parametrize("persistent", [False, True], ids=["fresh-workers", "persistent-pinned"])
def test_dataloader_workers_forked_while_offloaded_load_the_right_batches(broker_factory, tmp_path, persistent):
    _run_loader(broker_factory, tmp_path, persistent)


@pytest.mark.slow
def test_dataloader_stress_while_another_job_forces_offloads(broker_factory, tmp_path):
    """About a minute of epochs with fresh workers, the other job forcing
    offloads before every fork and all the while batches are loaded."""
    _run_loader(broker_factory, tmp_path, persistent=False, seconds=float(os.environ.get("ACB_STRESS_S", "60")))
