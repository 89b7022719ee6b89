"""Safe mode: for work acb cannot see (kernels launched on data_ptr()
without an operator, threads it does not gate).

The job writes its tensor through a numpy view, outside any operator,
between two offloads forced by another client that needs the device. In safe
mode every offload copies all memory (nothing is skipped as clean), and the
memory is offloaded only while the job's enabling thread waits inside acb,
so the raw write survives; the mode is said once on stderr and shown in
acb.status(). (Without safe mode the second offload skips the segment as
clean and the write is lost: that is what safe mode is for.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402
from conftest import read_line  # noqa: E402

torch = pytest.importorskip("torch")

MiB = 1 << 20
CAPACITY = str(64 * MiB)  # the job's 24 MiB and the other client's 48 do not fit together
BROKER_FLAGS = ("--quantum-ms", "50", "--quantum-deadline-ms", "300")


def _event(proc: subprocess.Popen, expected: str, stderr: Path, timeout_s: float = 60.0) -> dict:
    line = read_line(proc.stdout, timeout_s)
    assert line is not None, f"no {expected!r} within {timeout_s} s; stderr:\n{stderr.read_text()[-3000:]}"
    event = json.loads(line)
    assert event["event"] == expected, event
    return event


def _tell(proc: subprocess.Popen, line: str) -> None:
    proc.stdin.write((line + "\n").encode())
    proc.stdin.flush()


def _wait_released(probe, name: str, proc: subprocess.Popen, stderr: Path, timeout_s: float = 30.0) -> None:
    """Polls the broker (bounded) until the client `name` holds no lease."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, f"the job exited {proc.returncode}:\n{stderr.read_text()[-3000:]}"
        clients = [c for c in probe.request({"op": "status"})["clients"] if c["name"] == name]
        if clients and clients[0]["state"] in ("idle", "waiting"):
            return
        assert time.monotonic() < deadline, f"{name} kept the lease: {clients}"
        time.sleep(0.02)  # polling the broker's state, not standing in for a sync


def _run(root: Path, tmp: Path, broker, device: str, safe: bool) -> tuple:
    stderr_path = tmp / f"safe{int(safe)}.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, *h.job("safe_job.py", *(["--safe"] if safe else []))],
                                env={**h.acb_env(root, broker, device), "ACB_NAME": "job"}, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr)
    try:
        _event(proc, "ready", stderr_path)
        with broker.connect(name="hog") as hog, broker.connect(name="probe") as probe:
            # Twice: the hog needs the device (the job must be offloaded for
            # it); once the job has given the lease back, its next operator
            # waits for the device, and in safe mode only then may its memory
            # go. The hog gives the device back at once.
            for command, reached in (("raw", "written"), ("check", "done")):
                hog.send({"op": "acquire", "need_bytes": 48 * MiB})
                _wait_released(probe, "job", proc, stderr_path)
                _tell(proc, command)
                while hog.recv(60.0).get("op") != "grant":
                    pass
                hog.send({"op": "release", "resident_bytes": 0})
                done = _event(proc, reached, stderr_path)
        assert proc.wait(timeout=30) == 0, stderr_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return done, stderr_path.read_text()


def test_safe_mode_copies_every_offload_and_keeps_a_raw_write(broker_factory, tmp_path):
    root = h.require_package()
    device = h.device_spec(CAPACITY)
    broker = broker_factory("--device", device, *BROKER_FLAGS)
    done, stderr = _run(root, tmp_path, broker, device, safe=True)
    status = done["status"]
    print(json.dumps(done))
    assert done["total"] == 5.0 * 24 * MiB // 4, done
    assert status["safe_mode_reason"] == "acb.enable(safe=True)", status
    assert status["offloads"] >= 2 and status["skipped_clean_bytes"] == 0, status
    assert status["offload_copied_bytes"] >= 2 * 24 * MiB, status
    assert stderr.count("acb: safe mode (acb.enable(safe=True))") == 1, stderr


def test_safe_mode_reason_comes_from_the_argument_else_the_environment(monkeypatch):
    from acb import _api

    monkeypatch.delenv("ACB_SAFE_MODE", raising=False)
    assert _api.safe_mode_reason(None) == ""
    assert _api.safe_mode_reason(True) == "acb.enable(safe=True)"
    monkeypatch.setenv("ACB_SAFE_MODE", "1")
    assert _api.safe_mode_reason(None) == "ACB_SAFE_MODE=1"
    assert _api.safe_mode_reason(False) == ""  # an explicit False wins over the environment
