"""A broker shared by many users: every request has a bounded cost, and no user
takes more than the operator allows (docs/protocol.md "Limits", docs/operations.md
"Priority policy", "Reloading").

Each test starts a real broker on port 0 and talks to it from real processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acb import _wire
from conftest import ROOT, wait_for_stderr

MAX_STRING_BYTES = 256
STATUS_MAX_CLIENTS = 256


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_long_names_are_refused_and_a_crowd_with_status_costs_bounded_cpu(broker_factory, client_proc):
    # A long heartbeat timeout: the 300 connections below stay silent; they are
    # all this uid's, so its connection limit is raised for them.
    broker = broker_factory("--heartbeat-timeout-ms", "60000", "--max-connections-per-uid", "1024")
    holder = client_proc(broker, "holder", mode="hold")
    holder_id = holder.wait_event("welcome")["client_id"]
    holder.wait_event("grant")

    for _ in range(4):
        # A megabyte name does not even fit the frame limit before the handshake;
        # a name that fits the frame is refused by the string limit.
        with pytest.raises(_wire.BrokerError) as refused:
            broker.connect(name="n" * 1_000_000)
        assert "kMaxUnauthenticatedFrameBytes" in str(refused.value)
        with pytest.raises(_wire.BrokerError) as refused:
            broker.connect(name="n" * 1000)
        assert '"name"' in str(refused.value) and str(MAX_STRING_BYTES) in str(refused.value)

    crowd = [broker.connect(name=f"{i:03d}".ljust(MAX_STRING_BYTES, "x")) for i in range(300)]
    try:
        admin = broker.admin()
        before = cpu_seconds(broker.proc.pid)
        # 300 status requests at once, one from each client of the crowd. (One
        # connection that asks for more than its 8 MiB send backlog without
        # reading is dropped: that is its own problem, not everyone's.)
        for i, conn in enumerate(crowd):
            conn.send({"op": "status", "seq": 1000 + i})
        for conn in crowd:
            reply = conn.recv(timeout_s=30)
            assert reply["op"] == "status" and len(reply["clients"]) == STATUS_MAX_CLIENTS
        spent = cpu_seconds(broker.proc.pid) - before
        # Each reply is bounded (256 clients of at most 256-byte names): well under
        # 10 ms of broker CPU each even on a slow, shared machine. Unbounded, one
        # client's megabyte name made each of them cost about 50 ms.
        print(f"broker CPU for 300 status requests: {spent:.3f} s")
        assert spent < 3.0, f"300 status requests took {spent:.2f} s of broker CPU"

        for conn in (admin, crowd[5]):
            status = conn.request({"op": "status"})
            assert status["clients_total"] == 301
            assert status["clients_truncated"] is True
            assert len(status["clients"]) == STATUS_MAX_CLIENTS
            assert status["clients_by_state"]["holding"] == 1
            # The holder connected first: it is on the first page, still holding.
            assert {"client_id": holder_id, "state": "holding"}.items() <= next(
                c for c in status["clients"] if c["client_id"] == holder_id).items()
            rest = conn.request({"op": "status", "after": status["next_after"]})
            assert len(rest["clients"]) == 301 - STATUS_MAX_CLIENTS
            assert rest["clients_truncated"] is False and "next_after" not in rest
        admin.close()
    finally:
        for conn in crowd:
            conn.close()
    assert holder.proc.poll() is None
    assert "disconnecting client" not in broker.stderr_text()


# A child that becomes uid 65534 (nobody) and says hello with the given priority;
# prints the welcome or the broker's reason, then tries set_priority inference.
NOBODY_SCRIPT = r'''
import json, os, sys
import encodings.idna  # noqa: F401  (socket needs it; loaded before dropping root)
from acb import _wire  # before dropping root: the interpreter's own files may be root's only
os.setgid(65534)
os.setuid(65534)
host, port, token, priority = sys.argv[1:5]
try:
    conn = _wire.Connection(host, int(port), token=token, name="nobody", priority=priority)
except _wire.BrokerError as e:
    print(json.dumps({"refused": str(e)}), flush=True)
    sys.exit(0)
out = {"welcome": conn.welcome}
try:
    conn.request({"op": "set_priority", "priority": "inference"})
    out["set_priority"] = "ok"
except _wire.BrokerError as e:
    out["set_priority"] = str(e)
print(json.dumps(out), flush=True)
'''


def run_as_nobody(broker, priority: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", NOBODY_SCRIPT, broker.host, str(broker.port), broker.token,
                           priority], capture_output=True, timeout=30, env=env, cwd="/")
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as uid 65534 (nobody); "
                    "as another user the broker's own uid may claim every class, so nothing is refused")
def test_inference_from_another_uid_needs_the_operators_allowance(broker_factory, tmp_path: Path):
    config = tmp_path / "broker.json"
    config.write_text("{}")
    broker = broker_factory("--config", str(config))

    refused = run_as_nobody(broker, "inference")
    assert "refused" in refused, refused
    assert '"inference" is not allowed for uid 65534' in refused["refused"]
    assert "training, batch" in refused["refused"] and "priority_classes" in refused["refused"]
    # Training is everyone's; raising it to inference is refused the same way.
    trained = run_as_nobody(broker, "training")
    assert "welcome" in trained, trained
    assert "not allowed for uid 65534" in trained["set_priority"]
    # The broker's own uid (this test's) may claim every class.
    broker.connect(priority="inference").close()

    config.write_text(json.dumps({"priority_classes": {"uid:65534": ["inference"]}}))
    broker.proc.send_signal(signal.SIGHUP)
    assert wait_for_stderr(broker, "reloaded")
    allowed = run_as_nobody(broker, "inference")
    assert "welcome" in allowed, allowed
    assert allowed["set_priority"] == "ok"


def test_sighup_with_a_fifo_for_config_leaves_the_broker_answering(broker_factory, tmp_path: Path):
    config = tmp_path / "broker.json"
    config.write_text(json.dumps({"quantum_ms": 120}))
    broker = broker_factory("--config", str(config))
    config.unlink()
    os.mkfifo(config)  # nobody ever writes it: a blocking open would hang the broker's only thread
    broker.proc.send_signal(signal.SIGHUP)
    assert wait_for_stderr(broker, "not a regular file")
    with broker.connect() as conn:
        start = time.monotonic()
        status = conn.request({"op": "status"}, timeout_s=5)
        assert time.monotonic() - start < 1.0
    assert status["quantum_ms"] == 120  # the running configuration stays
