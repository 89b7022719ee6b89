"""Leases across real processes: contention, crashed and frozen holders, drain, preemption."""

from __future__ import annotations

import os
import signal
import time

from conftest import expect_silence, wait_for


def test_contending_clients_all_get_the_lease_in_turn(broker_factory, client_proc):
    broker = broker_factory("--quantum-ms", "10000")
    clients = [client_proc(broker, f"job{i}", mode="once", hold_ms=50) for i in range(5)]
    events = [c.finish() for c in clients]
    intervals = []
    for i, ev in enumerate(events):
        grants = [e for e in ev if e["event"] == "grant"]
        releases = [e for e in ev if e["event"] == "release"]
        assert len(grants) == 1 and len(releases) == 1, f"job{i}: {ev}"
        intervals.append((grants[0]["t"], releases[0]["t"], grants[0]["lease"]))
    intervals.sort()
    # One exclusive lease: a grant never arrives before the previous holder released.
    for (_, r0, _), (g1, _, _) in zip(intervals, intervals[1:]):
        assert r0 <= g1, f"leases overlap: {intervals}"
    leases = [lease for _, _, lease in intervals]
    assert leases == sorted(leases) and len(set(leases)) == len(leases)
    with broker.connect(name="observer") as c:
        status = c.request({"op": "status"})
    assert status["devices"][0]["holder"] is None


def test_kill_9_holder_hands_the_lease_to_the_next_waiter(broker_factory, client_proc):
    broker = broker_factory("--heartbeat-timeout-ms", "2000", "--quantum-ms", "60000")
    holder = client_proc(broker, "holder", mode="hold")
    holder.wait_event("grant")
    with broker.connect(name="waiter") as waiter:
        waiter.send({"op": "acquire"})
        expect_silence(waiter, "grant", 0.3)
        killed_at = time.monotonic()
        os.kill(holder.proc.pid, signal.SIGKILL)
        grant = wait_for(waiter, "grant", timeout_s=2.0 + 3.0)
        # A closed socket is noticed at once, well inside the heartbeat bound.
        assert time.monotonic() - killed_at < 2.0
        assert grant["device"] == waiter.welcome["device"]


def test_frozen_holder_loses_the_lease_after_the_heartbeat_timeout(broker_factory, client_proc):
    timeout_ms = 1000
    broker = broker_factory("--heartbeat-timeout-ms", str(timeout_ms), "--quantum-ms", "60000")
    holder = client_proc(broker, "frozen", mode="hold")
    holder_id = holder.wait_event("welcome")["client_id"]
    holder.wait_event("grant")
    with broker.connect(name="waiter") as waiter:
        waiter.send({"op": "acquire"})
        expect_silence(waiter, "grant", 0.2)
        stopped_at = time.monotonic()
        os.kill(holder.proc.pid, signal.SIGSTOP)  # the socket stays open: only silence tells
        try:
            grant = wait_for(waiter, "grant", timeout_s=timeout_ms / 1000 + 5.0)
            waited = time.monotonic() - stopped_at
        finally:
            os.kill(holder.proc.pid, signal.SIGCONT)
        assert grant["lease"] > 0
        # Its last heartbeat came at most one interval before the stop.
        assert waited >= timeout_ms / 1000 * 0.5, f"granted after only {waited:.3f} s"
        status = waiter.request({"op": "status"})
        assert holder_id not in [c["client_id"] for c in status["clients"]]
        assert status["devices"][0]["holder"] == waiter.welcome["client_id"]
    assert "heartbeat" in broker.stderr_text() or "disconnecting client" in broker.stderr_text()


def test_draining_a_held_device_revokes_with_reason_drain(broker_factory):
    broker = broker_factory("--device", "0:1GiB", "--device", "1:1GiB", "--quantum-ms", "60000")
    with broker.connect(name="holder", device=0) as holder, broker.admin() as admin:
        holder.send({"op": "acquire"})
        grant = wait_for(holder, "grant")
        assert grant["device"] == 0
        admin.request({"op": "drain_device", "device": 0})
        revoke = wait_for(holder, "revoke")
        assert revoke["reason"] == "drain"
        assert revoke["device"] == 0 and revoke["lease"] == grant["lease"]
        status = admin.request({"op": "status"})
        assert [d["draining"] for d in status["devices"] if d["device"] == 0] == [True]


def test_inference_preempts_a_training_holder(broker_factory):
    broker = broker_factory("--quantum-ms", "60000")
    with broker.connect(name="train", priority="training") as train, \
            broker.connect(name="serve", priority="inference") as serve:
        train.send({"op": "acquire"})
        wait_for(train, "grant")
        serve.send({"op": "acquire"})
        revoke = wait_for(train, "revoke")
        assert revoke["reason"] == "preempt"
        train.send({"op": "release", "resident_bytes": 0})
        grant = wait_for(serve, "grant")
        assert grant["lease"] > revoke["lease"]
