"""acb.disable() in one process keeps its memory counted, so no other
process's grant counts on memory that is not free.

A process that disables acb runs ungated from then on: its memory can never
be offloaded. It stays connected and reports that memory as pinned; the
broker counts it and never asks for it. Here the other process, evicted to
make room for it, must wait for its next grant (its need does not fit beside
the pinned memory) instead of being granted a device whose memory is taken,
where its restore would fail with an out-of-memory error; once the first
process enables acb again, its memory is evictable and both finish with
exact results.
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
CAPACITY = str(64 * MiB)  # 30 (disabler) + 40 (waiter) do not fit


def _event(proc: subprocess.Popen, expected: str, timeout_s: float = 60.0) -> dict:
    line = read_line(proc.stdout, timeout_s)
    assert line is not None, f"no {expected!r} from {proc.args} within {timeout_s} s"
    event = json.loads(line)
    assert event["event"] == expected, event
    return event


def _tell(proc: subprocess.Popen, line: str) -> None:
    proc.stdin.write((line + "\n").encode())
    proc.stdin.flush()


def _client(broker, name: str, timeout_s: float, want, proc: subprocess.Popen, stderr: Path) -> dict:
    """Polls the broker's status (bounded) until `want(client)` holds for the
    client named `name`, whose process `proc` must not exit meanwhile."""
    deadline = time.monotonic() + timeout_s
    with broker.connect(name="probe") as conn:
        while True:
            assert proc.poll() is None, f"{name} exited {proc.returncode}:\n{stderr.read_text()[-3000:]}"
            reply = conn.request({"op": "status"})
            clients = [c for c in reply["clients"] if c["name"] == name]
            if clients and want(clients[0]):
                return clients[0]
            assert time.monotonic() < deadline, f"{name} never reached the state looked for: {reply}"
            time.sleep(0.02)  # polling the broker's state, not standing in for a sync


def test_disabled_process_memory_stays_counted_and_the_other_waits(broker_factory, tmp_path):
    root = h.require_package()
    device = h.device_spec(CAPACITY)
    broker = broker_factory("--device", device, "--quantum-ms", "50")
    procs = []

    def start(role: str) -> subprocess.Popen:
        env = {**h.acb_env(root, broker, device), "ACB_NAME": role}
        stderr = open(tmp_path / f"{role}.stderr", "wb")
        proc = subprocess.Popen([sys.executable, *h.job("pinned_job.py", "--role", role,
                                                        "--out", str(tmp_path / f"{role}.pt"))],
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        stderr.close()
        procs.append(proc)
        return proc

    try:
        waiter = start("waiter")
        _event(waiter, "stepped")
        disabler = start("disabler")
        _event(disabler, "disabled")
        # The waiter was evicted for the disabler; now its need cannot fit
        # beside the disabler's pinned 30 MiB: it must wait, not fail.
        _tell(waiter, "continue")
        _client(broker, "waiter", 30, lambda c: c["state"] == "waiting", waiter, tmp_path / "waiter.stderr")
        pinned = _client(broker, "disabler", 30, lambda c: c["resident_bytes"] >= 30 * MiB, disabler,
                         tmp_path / "disabler.stderr")
        _tell(disabler, "resume")
        done = {name: _event(proc, "done", 120) for name, proc in (("disabler", disabler), ("waiter", waiter))}
        for proc in procs:
            assert proc.wait(timeout=30) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(json.dumps({"pinned": pinned, "done": done}))
    # The same operators in this process give the same bits.
    n = 2 * (1 << 20) // 4
    expected = {
        "disabler": [torch.full((n,), float(i)).mul_(2).add_(1).add_(1).add_(1).sum().item() for i in range(15)],
        "waiter": [torch.full((n,), float(i)).mul_(3).add_(1).add_(1).sum().item() for i in range(20)],
    }
    for name, sums in expected.items():
        assert torch.load(tmp_path / f"{name}.pt").tolist() == sums, name
    waiter_status = done["waiter"]["status"]
    assert waiter_status["offloads"] >= 1 and waiter_status["restored_bytes"] > 0, waiter_status
