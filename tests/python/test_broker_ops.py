"""Operating the broker: status, metrics, config reload, signals, ports, idle exit."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import NO_CUDA_LIBRARY, wait_for, wait_for_stderr


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = "^" + re.escape(name) + (r"\{" + labels + r"\}" if labels else "") + r" (\S+)$"
    values = [float(m.group(1)) for m in re.finditer(pattern, text, re.M)]
    assert len(values) == 1, f"{name}{{{labels}}} found {len(values)} times in:\n{text}"
    return values[0]


def test_status_and_metrics_report_leases_and_devices(broker_factory):
    broker = broker_factory("--device", "0:1GiB", "--quantum-ms", "60000")
    with broker.connect(name="a", need_bytes=1 << 20) as a, broker.connect(name="b") as b:
        a.send({"op": "acquire"})
        wait_for(a, "grant")
        a.send({"op": "residency", "resident_bytes": 300 << 20})
        b.send({"op": "acquire"})
        b.request({"op": "status"})  # frames of one connection are handled in order: b now waits
        status = a.request({"op": "status"})
        dev = status["devices"][0]
        assert dev["device"] == 0 and dev["name"] == "0" and dev["capacity_bytes"] == 1 << 30
        assert dev["holder"] == a.welcome["client_id"] and dev["queue"] == [b.welcome["client_id"]]
        assert dev["resident_bytes"] == 300 << 20 and dev["draining"] is False
        clients = {c["client_id"]: c for c in status["clients"]}
        ca = clients[a.welcome["client_id"]]
        # b waits: a was asked at once to yield when idle (docs/scheduling.md, "Preemption").
        assert ca["name"] == "a" and ca["state"] == "revoked" and ca["grants"] == 1
        assert ca["need_bytes"] == 1 << 20 and ca["priority"] == "training"
        assert clients[b.welcome["client_id"]]["state"] == "waiting"
        assert a.welcome["device_capacity_bytes"] == 1 << 30

        text = broker.metrics()
        assert metric(text, "acb_leases_granted_total") == 1
        assert metric(text, "acb_clients") == 2
        assert metric(text, "acb_device_holder", 'device="0",name="0"') == a.welcome["client_id"]
        assert metric(text, "acb_device_capacity_bytes", 'device="0",name="0"') == 1 << 30
        assert metric(text, "acb_device_resident_bytes", 'device="0",name="0"') == 300 << 20
        assert metric(text, "acb_restored_bytes_total") == 300 << 20
        assert metric(text, "acb_lease_wait_seconds_count") == 1
        assert metric(text, "acb_revokes_total") == 1

        a.send({"op": "release", "resident_bytes": 100 << 20})
        wait_for(b, "grant")
        text = broker.metrics()
        assert metric(text, "acb_leases_granted_total") == 2
        assert metric(text, "acb_evicted_bytes_total") == 200 << 20
        assert metric(text, "acb_lease_wait_seconds_count") == 2
        assert metric(text, "acb_device_holder", 'device="0",name="0"') == b.welcome["client_id"]
        assert 'acb_lease_wait_seconds_bucket{le="+Inf"} 2' in text
    with pytest.raises(Exception, match="404"):
        broker.metrics("/nothing")


def test_a_test_broker_without_device_does_not_probe_the_gpus(broker_factory):
    # On any machine, GPU or not: the default device, because the probe was
    # pointed at no CUDA library, never at the node's GPUs.
    broker = broker_factory()
    assert wait_for_stderr(broker, "no --device given and no GPU found")
    assert NO_CUDA_LIBRARY in broker.stderr_text()
    with broker.connect(name="a") as a:
        devices = a.request({"op": "status"})["devices"]
    assert [(d["name"], d["capacity_bytes"]) for d in devices] == [("0", 0)], devices  # 0: unknown capacity


def test_trace_returns_the_lease_timeline(broker):
    with broker.connect(name="job") as job, broker.admin() as admin:
        for _ in range(2):
            job.send({"op": "acquire"})
            wait_for(job, "grant")
            job.send({"op": "release"})
        job.send({"op": "acquire"})
        wait_for(job, "grant")
        slices = admin.request({"op": "trace"})["slices"]
    assert len(slices) == 3
    assert all(s["client_id"] == job.welcome["client_id"] and s["name"] == "job" for s in slices)
    assert slices[0]["end_us"] is not None and slices[0]["start_us"] <= slices[0]["end_us"]
    assert slices[-1]["end_us"] is None


def test_sighup_reloads_the_quantum(broker_factory, tmp_path):
    config = tmp_path / "broker.json"
    config.write_text(json.dumps({"quantum_ms": 120, "devices": ["0:1GiB"]}))
    broker = broker_factory("--config", str(config))
    with broker.connect(name="job") as job:
        assert job.request({"op": "status"})["quantum_ms"] == 120
        config.write_text(json.dumps({"quantum_ms": 345, "devices": ["0:1GiB", "spare:2GiB"]}))
        broker.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while job.request({"op": "status"})["quantum_ms"] != 345:
            assert time.monotonic() < deadline, "SIGHUP did not change the quantum within 5 s"
            time.sleep(0.02)
        status = job.request({"op": "status"})
        assert sorted(d["name"] for d in status["devices"]) == ["0", "spare"]
        job.send({"op": "acquire"})
        assert wait_for(job, "grant")["quantum_ms"] == 345
        # A broken file keeps the running configuration, and the broker.
        config.write_text("{ not json")
        broker.proc.send_signal(signal.SIGHUP)
        assert wait_for_stderr(broker, "keeping the running configuration")
        assert job.request({"op": "status"})["quantum_ms"] == 345
    assert broker.alive()


def test_sigterm_and_sigint_exit_zero(broker_factory):
    for sig in (signal.SIGTERM, signal.SIGINT):
        broker = broker_factory()
        with broker.connect(name="job") as job:
            job.send({"op": "acquire"})
            wait_for(job, "grant")
            broker.proc.send_signal(sig)
            assert broker.wait_exit() == 0
            broker.expect_exit = 0


def test_port_taken_is_a_clear_error(broker_factory, broker_bin, tmp_path):
    first = broker_factory()
    result = subprocess.run([broker_bin, "--port", str(first.port), "--metrics-port", "0"],
                            env={"ACB_TOKEN_DIR": str(tmp_path / "t2"), "PATH": "/usr/bin:/bin"},
                            capture_output=True, timeout=20)
    assert result.returncode != 0
    assert b"cannot listen" in result.stderr and b"in use" in result.stderr
    assert result.stdout == b""


def test_bad_flags_are_refused(broker_bin, tmp_path):
    env = {"ACB_TOKEN_DIR": str(tmp_path / "t"), "PATH": "/usr/bin:/bin"}
    for args, needle in ((["--device", "0:lots"], b"capacity"), (["--frobnicate", "1"], b"unknown flag"),
                         (["--quantum-ms", "-3"], b"quantum-ms"),
                         (["--config", str(tmp_path / "none.json")], b"config"),
                         (["--host", "no-such-host.invalid", "--port", "0"], b"no-such-host.invalid")):
        result = subprocess.run([broker_bin, *args], env=env, capture_output=True, timeout=20)
        assert result.returncode == 2 and needle in result.stderr, (args, result.returncode, result.stderr)


def test_idle_exit_and_port_file(broker_factory, tmp_path):
    port_file = tmp_path / "broker.port"
    broker = broker_factory("--idle-exit-s", "1", "--port-file", str(port_file))
    info = json.loads(port_file.read_text())
    assert info == {"host": "127.0.0.1", "port": broker.port, "metrics_port": broker.metrics_port,
                    "pid": broker.proc.pid}
    with broker.connect(name="keeps-it-alive") as job:
        job.send({"op": "acquire"})
        wait_for(job, "grant", timeout_s=3)
    assert broker.wait_exit(timeout_s=15) == 0
    broker.expect_exit = 0
    with pytest.raises(OSError):
        socket.create_connection((broker.host, broker.port), timeout=1).close()


def test_default_device_capacity_comes_from_the_emulated_device(broker_factory):
    broker = broker_factory(env={"ACB_EMULATED_DEVICE": "acbtest:512MiB"})
    with broker.connect(name="job") as job:
        assert job.welcome["device"] == 0 and job.welcome["device_capacity_bytes"] == 512 << 20
        assert job.welcome["heartbeat_timeout_ms"] > job.welcome["heartbeat_interval_ms"] > 0
    unknown = broker_factory()
    with unknown.connect(name="job", need_bytes=1 << 40) as job:
        assert job.welcome["device_capacity_bytes"] == 0  # unknown: memory-aware policy off
        job.send({"op": "acquire"})
        assert wait_for(job, "grant")["lease"] > 0


def test_a_non_loopback_host_is_served_with_a_warning(broker_factory):
    broker = broker_factory("--host", "0.0.0.0")
    assert "not loopback" in broker.stderr_text()
    with broker.connect(name="job") as job:
        assert job.welcome["client_id"] > 0
    local = broker_factory()
    assert "not loopback" not in local.stderr_text()


def test_help_describes_the_flags(broker_bin):
    result = subprocess.run([broker_bin, "--help"], capture_output=True, timeout=20)
    assert result.returncode == 0
    for flag in (b"--port", b"--metrics-port", b"--device", b"--config", b"--idle-exit-s", b"--port-file"):
        assert flag in result.stdout


def _wakeups(pid: int) -> int:
    """Times the broker's thread went to sleep and was woken (it has one thread)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches in /proc/{pid}/status")


def test_a_broker_with_nothing_due_sleeps_until_an_event(broker_factory):
    # A client holds the device and nobody waits: no quantum, no deadline is
    # due before its heartbeat timeout (60 s). The broker must not wake on a
    # clock meanwhile (it used to every 10 ms: about 200 times in 2 s).
    broker = broker_factory("--heartbeat-timeout-ms", "60000")
    holder = broker.connect(name="holder")
    holder.send({"op": "acquire"})
    wait_for(holder, "grant")
    idle = broker.connect(name="idle")
    assert idle.request({"op": "status"}, timeout_s=10)["op"] == "status"
    before = _wakeups(broker.proc.pid)
    time.sleep(2.0)  # the interval observed, not a synchronisation
    woken = _wakeups(broker.proc.pid) - before
    assert woken < 10, f"an idle broker woke {woken} times in 2 s"
    # And an event still gets its decision at once: a waiter has the holder
    # revoked (its lease is older than the quantum by now).
    idle.send({"op": "acquire"})
    assert wait_for(holder, "revoke")["reason"] == "quantum"
