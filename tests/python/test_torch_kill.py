"""A job killed with kill -9 while it holds the device: the broker reclaims
its lease and residency, and the jobs waiting behind it go on and finish with
the same results as alone."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402
from conftest import read_line  # noqa: E402

torch = pytest.importorskip("torch")

TRAINERS = {
    "a": ("--model", "mlp", "--seed", "3", "--steps", "6"),
    "b": ("--model", "cnn", "--seed", "4", "--steps", "6"),
}


def _wait_queued(broker, count: int, timeout_s: float = 60.0) -> None:
    """Until the broker's device queue holds `count` waiters (bounded)."""
    deadline = time.monotonic() + timeout_s
    with broker.connect(name="probe") as conn:
        while True:
            reply = conn.request({"op": "status"})
            queue = reply["devices"][0]["queue"]
            if len(queue) >= count:
                return
            assert time.monotonic() < deadline, f"never {count} waiters: {reply}"
            time.sleep(0.05)  # polling the broker's state, not standing in for a sync


def test_kill_9_of_the_holder_lets_the_others_finish(broker_factory, tmp_path):
    root = h.require_package()
    refs = [(h.start([sys.executable, *h.job("train_job.py", *args, "--out", str(tmp_path / f"{n}.alone.pt"))],
                     h.base_env(root), tmp_path / f"{n}.alone.log"), tmp_path / f"{n}.alone.log")
            for n, args in TRAINERS.items()]
    for proc, log in refs:
        h.finish(proc, log)

    device = h.device_spec("32MiB")
    broker = broker_factory("--device", device, "--quantum-ms", "100")
    env = h.acb_env(root, broker, device)
    holder = subprocess.Popen([sys.executable, *h.job("hold_job.py", "--priority", "training")],
                              env={**env, "ACB_ENABLE": "0"}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        line = read_line(holder.stdout, 60)
        assert line is not None and json.loads(line)["event"] == "holding", holder.stderr.read().decode()
        procs = []
        for n, args in TRAINERS.items():
            argv = h.job("train_job.py", *args, "--out", str(tmp_path / f"{n}.acb.pt"),
                         "--status", str(tmp_path / f"{n}.status.json"))
            log = tmp_path / f"{n}.acb.log"
            procs.append((h.start(h.acb_run("training", argv), env, log), log))
        _wait_queued(broker, 1)
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=10) == -signal.SIGKILL
        for proc, log in procs:
            h.finish(proc, log, timeout_s=180)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for stream in (holder.stdin, holder.stdout, holder.stderr):
            stream.close()

    for n in TRAINERS:
        h.assert_same_tensors(torch.load(tmp_path / f"{n}.alone.pt"), torch.load(tmp_path / f"{n}.acb.pt"), n)
        status = h.load_status(tmp_path / f"{n}.status.json")["acb"]
        assert status["enabled"] and status["switches"] >= 1, status
