"""Protocol errors and security: one bad connection is closed, everyone else goes on."""

from __future__ import annotations

import random
import struct

import pytest

from _raw_wire import frame, handshake, hello, raw_connect, read_until_closed
from acb import _wire
from conftest import wait_for


def random_bytes(n: int) -> bytes:
    return random.Random(1234).randbytes(n)


# Each case: (bytes after an optional hello, whether to say hello first, expected reason fragment or None).
CASES = {
    "random bytes": (random_bytes(4096), False, None),
    "oversized length": (struct.pack(">I", (1 << 20) + 1) + b"{}", False, "exceeds the maximum"),
    "not json": (frame(b"{not json"), False, "not valid JSON"),
    "json array": (frame([1, 2, 3]), False, "not a JSON object"),
    "missing op": (frame({"hello": 1}), False, "\"op\""),
    "frame before hello": (frame({"op": "acquire"}), False, "first frame must be \"hello\""),
    "unknown op": (frame({"op": "launch_missiles"}), True, "unknown op"),
    "wrong member type": (frame({"op": "residency", "resident_bytes": "lots"}), True, "resident_bytes"),
    "negative bytes": (frame({"op": "acquire", "need_bytes": -5}), True, "need_bytes"),
    "missing member": (frame({"op": "residency"}), True, "resident_bytes"),
    "second hello": (None, True, "second"),
    "status without seq": (frame({"op": "status"}), True, "seq"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_closes_only_that_connection(broker, case):
    payload, say_hello, reason = CASES[case]
    with broker.connect(name="bystander", timeout_s=5) as bystander:
        bystander.send({"op": "acquire"})
        wait_for(bystander, "grant")
        s = raw_connect(broker)
        try:
            if say_hello:
                assert handshake(broker, s)["op"] == "welcome"
            if payload is None:  # second hello
                payload = frame(hello(broker))
            s.sendall(payload)
            messages = read_until_closed(s)
        finally:
            s.close()
        if reason is not None:
            assert messages and messages[-1]["op"] == "error", messages
            assert reason in messages[-1]["reason"], messages
        # The server logged one line naming the peer, and everyone else goes on.
        assert "protocol error from 127.0.0.1:" in broker.stderr_text()
        assert broker.alive()
        status = bystander.request({"op": "status"})
        assert status["devices"][0]["holder"] == bystander.welcome["client_id"]
        bystander.send({"op": "release"})
        with broker.connect(name="next") as other:
            other.send({"op": "acquire"})
            assert wait_for(other, "grant")["lease"] > 0


def test_truncated_frame_then_close_leaves_the_server_up(broker):
    with broker.connect(name="bystander") as bystander:
        s = raw_connect(broker)
        s.sendall(frame(hello(broker))[:10])
        s.close()
        s = raw_connect(broker)
        s.sendall(frame(hello(broker)) + frame({"op": "acquire"})[:6])
        s.close()
        assert bystander.request({"op": "status"})["op"] == "status"
        assert broker.alive()


def test_wrong_token_is_refused(broker):
    # The broker's proof does not verify with a wrong token: the client stops there.
    with pytest.raises(_wire.BrokerError, match="could not prove it holds the client token"):
        broker.connect(token="0" * 64)
    with pytest.raises(_wire.BrokerError, match="could not prove it holds the client token"):
        broker.connect(token="")
    # The admin role needs the admin token, not the client's.
    with pytest.raises(_wire.BrokerError, match="could not prove it holds the admin token"):
        _wire.Connection(broker.host, broker.port, role="admin", token=broker.token)
    # A client that goes on with a proof from a wrong token is refused by the broker.
    for token, role in (("0" * 64, "client"), (broker.token, "admin"), (broker.admin_token, "client")):
        s = raw_connect(broker)
        try:
            assert handshake(broker, s, token=token, role=role) == {"op": "error", "reason": "authentication failed"}
            assert read_until_closed(s) == []
        finally:
            s.close()
    assert "authentication failed from 127.0.0.1:" in broker.stderr_text()
    with broker.connect(name="good") as good:
        assert good.welcome["client_id"] > 0


def test_admin_ops_with_the_client_token_are_refused(broker):
    with broker.connect(name="plain") as c:
        for op in ({"op": "set_quantum", "quantum_ms": 5},
                   {"op": "drain_device", "device": 0},
                   {"op": "add_device", "capacity_bytes": 1 << 30},
                   {"op": "remove_device", "device": 0},
                   {"op": "set_quota", "client_id": c.welcome["client_id"], "quota_bytes": 1},
                   {"op": "trace"}):
            with pytest.raises(_wire.BrokerError, match="requires the admin role"):
                c.request(op)
        with broker.connect(name="other") as other:
            with pytest.raises(_wire.BrokerError, match="admin role"):
                c.request({"op": "set_priority", "priority": "batch", "client_id": other.welcome["client_id"]})
            # Its own priority it may change.
            c.request({"op": "set_priority", "priority": "batch"})
            status = c.request({"op": "status"})
        prio = {x["client_id"]: x["priority"] for x in status["clients"]}
        assert prio[c.welcome["client_id"]] == "batch"
        assert prio[other.welcome["client_id"]] == "training"
        assert status["quantum_ms"] != 5 and not status["devices"][0]["draining"]


def test_admin_connections_may_administer(broker):
    with broker.admin() as admin, broker.connect(name="job") as job:
        admin.request({"op": "set_quota", "client_id": job.welcome["client_id"], "quota_bytes": 1 << 20})
        added = admin.request({"op": "add_device", "capacity_bytes": 2 << 30, "name": "extra"})
        assert isinstance(added["device"], int)
        with pytest.raises(_wire.BrokerError, match="does not exist"):
            admin.request({"op": "drain_device", "device": 999})
        with pytest.raises(_wire.BrokerError, match="no client"):
            admin.request({"op": "set_quota", "client_id": 999999, "quota_bytes": 1})
        status = admin.request({"op": "status"})
        assert [d["capacity_bytes"] for d in status["devices"] if d["name"] == "extra"] == [2 << 30]
        quota = {c["client_id"]: c["quota_bytes"] for c in status["clients"]}
        assert quota[job.welcome["client_id"]] == 1 << 20
        # An admin connection holds no lease.
        admin.send({"op": "acquire"})
        with pytest.raises(_wire.BrokerError):
            wait_for(admin, "grant", 5.0)


def test_no_common_version_is_refused(broker):
    s = raw_connect(broker)
    try:
        s.sendall(frame(hello(broker, versions=[99])))
        messages = read_until_closed(s)
    finally:
        s.close()
    assert messages[-1]["op"] == "error" and "version" in messages[-1]["reason"]


def test_a_connection_without_hello_is_closed_after_the_heartbeat_timeout(broker_factory):
    broker = broker_factory("--heartbeat-timeout-ms", "300")
    s = raw_connect(broker)
    try:
        messages = read_until_closed(s, timeout_s=5.0)
    finally:
        s.close()
    assert messages and messages[-1]["op"] == "error" and "no hello" in messages[-1]["reason"]


def test_a_hello_pinned_to_a_missing_device_is_refused(broker):
    with pytest.raises(_wire.BrokerError, match="7"):
        broker.connect(name="lost", device=7)
    with broker.connect(name="placed", device=0) as ok:
        assert ok.welcome["device"] == 0


def test_a_hello_names_its_gpu_by_uuid(broker_factory):
    """A process whose CUDA_VISIBLE_DEVICES lists UUIDs names its GPU by UUID (or a prefix of
    one); the broker maps it to that GPU's device and keeps the client there."""
    broker = broker_factory("--device", "gpu-a:64MiB", "--device", "gpu-b:64MiB")
    with broker.connect(name="probe") as probe:
        devices = probe.request({"op": "status"})["devices"]
    uuids = [d["uuid"] for d in devices]
    assert [d["name"] for d in devices] == ["gpu-a", "gpu-b"]
    assert all(u.startswith("GPU-") and len(u) == 40 for u in uuids) and uuids[0] != uuids[1], uuids
    with broker.connect(name="by-uuid", device_uuid=uuids[1]) as c:
        assert c.welcome["device"] == 1
    with broker.connect(name="by-prefix", device_uuid=uuids[0][:12].upper()) as c:
        assert c.welcome["device"] == 0
    with pytest.raises(_wire.BrokerError, match="does not exist.*its devices: 0=GPU-"):
        broker.connect(name="lost", device_uuid="GPU-00000000-dead")
    with pytest.raises(_wire.BrokerError, match="cannot both be given"):
        broker.connect(name="both", device=0, device_uuid=uuids[0])
    # The same names give the same UUIDs in another broker: stable, not per run.
    again = broker_factory("--device", "gpu-a:64MiB", "--device", "gpu-b:64MiB")
    with again.connect(name="probe") as probe:
        assert [d["uuid"] for d in probe.request({"op": "status"})["devices"]] == uuids
