"""Mutual authentication (protocol version 2): the token never travels, the
broker proves it holds the token before a client sends anything derived from
it, and a client proof that does not verify is refused and logged.

A squatter here is a plain socket server on port 0 that knows no token, as a
program holding the broker's port while the broker is down would be."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import threading

import pytest

from _cli_helpers import package_env, run_cli
from _raw_wire import frame, handshake, raw_connect, read_until_closed
from acb import _handshake, _wire
from conftest import wait_for_stderr

TOKEN = "c" * 64
ADMIN_TOKEN = "a" * 64


class Squatter:
    """Accepts one connection, answers its first frame with `reply(hello)`
    (a list of messages), and records every byte the client sent until it
    closed (bounded by the socket timeout)."""

    def __init__(self, reply) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = b""
        self.reply = reply
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(10)
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        with conn:
            while len(self.received) < 4 or len(self.received) < 4 + struct.unpack(">I", self.received[:4])[0]:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                self.received += chunk
            hello = json.loads(self.received[4:4 + struct.unpack(">I", self.received[:4])[0]])
            for message in self.reply(hello):
                conn.sendall(frame(message))
            while True:  # until the client closes: whatever it sends is recorded
                try:
                    chunk = conn.recv(65536)
                except ConnectionResetError:  # it closed with our frames unread: a reset, not an EOF
                    return
                if not chunk:
                    return
                self.received += chunk

    def finish(self) -> bytes:
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the client never closed its connection to the squatter"
        self.listener.close()
        return self.received


def forged_challenge(hello: dict) -> list:
    """What a squatter can do best: a proof under a token it guesses, then a welcome."""
    nonce = _handshake.fresh_nonce()
    proof = _handshake.broker_proof("guess", hello.get("role", "client"),
                                    bytes.fromhex(hello["client_nonce"]), nonce)
    return [{"op": "challenge", "broker_nonce": nonce.hex(), "broker_proof": proof.hex()},
            {"op": "welcome", "version": 2, "client_id": 666, "device": 0, "device_capacity_bytes": 0,
             "heartbeat_interval_ms": 1000, "heartbeat_timeout_ms": 3000}]


def version1_welcome(hello: dict) -> list:
    """A squatter that skips the challenge and welcomes at once."""
    return [{"op": "welcome", "version": 1, "client_id": 666, "device": 0, "device_capacity_bytes": 0,
             "heartbeat_interval_ms": 1000, "heartbeat_timeout_ms": 3000}]


@pytest.mark.parametrize("reply", [forged_challenge, version1_welcome])
@pytest.mark.parametrize("role", ["client", "admin"])
def test_a_squatter_learns_no_token_and_is_named_as_not_the_broker(role, reply):
    squatter = Squatter(reply)
    token = ADMIN_TOKEN if role == "admin" else TOKEN
    with pytest.raises(_wire.BrokerError) as raised:
        _wire.Connection("127.0.0.1", squatter.port, role=role, token=token, timeout_s=5)
    received = squatter.finish()
    if reply is forged_challenge:
        assert f"the process at 127.0.0.1:{squatter.port} is not the acb broker" in str(raised.value)
        assert f"could not prove it holds the {role} token" in str(raised.value)
    for secret in (TOKEN, ADMIN_TOKEN):
        assert secret.encode() not in received
    # Only the hello reached it: no auth, so no proof to replay or to test guesses against.
    (size,) = struct.unpack(">I", received[:4])
    assert len(received) == 4 + size
    hello = json.loads(received[4:])
    assert hello["op"] == "hello" and "token" not in hello
    assert _handshake.parse_hex32(hello["client_nonce"]) is not None


def test_proofs_match_rfc4231_and_the_cpp_implementation():
    import hashlib
    import hmac
    assert hmac.new(b"\x0b" * 20, b"Hi There", hashlib.sha256).hexdigest() == \
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    # The same values as tests/cpp/common/test_handshake.cpp.
    assert _handshake.broker_proof("tok", "client", b"\x11" * 32, b"\x22" * 32).hex() == \
        "065baf965e8eb898b74268fae7e91f5ac95282705d3f7a9c9a96f96b64148120"
    assert _handshake.client_proof("tok", "admin", b"\x22" * 32, b"\x11" * 32).hex() == \
        "b7476fac22915ed280e92ae0f100175c72122bf3a825d136f9d9bd88f8c453ef"
    assert _handshake.parse_hex32("AB" * 32) is None and _handshake.parse_hex32("ab" * 31) is None


def test_a_version_1_hello_with_the_token_in_clear_is_refused(broker):
    s = raw_connect(broker)
    try:
        s.sendall(frame({"op": "hello", "versions": [1], "token": broker.token, "name": "old", "pid": os.getpid()}))
        messages = read_until_closed(s)
    finally:
        s.close()
    assert len(messages) == 1 and messages[0]["op"] == "error", messages  # no challenge, no welcome
    assert "token in clear" in messages[0]["reason"] and "upgrade" in messages[0]["reason"]
    assert wait_for_stderr(broker, "token in clear")
    # With a nonce but only version 1 on offer, the answer says what to do as well.
    s = raw_connect(broker)
    try:
        s.sendall(frame({"op": "hello", "versions": [1], "client_nonce": "00" * 32}))
        messages = read_until_closed(s)
    finally:
        s.close()
    assert messages[-1]["op"] == "error" and "upgrade" in messages[-1]["reason"]


def test_a_wrong_client_proof_is_refused_and_logged(broker):
    s = raw_connect(broker)
    try:
        assert handshake(broker, s, token="not-the-token", name="prober") == \
            {"op": "error", "reason": "authentication failed"}
        assert read_until_closed(s) == []
    finally:
        s.close()
    assert wait_for_stderr(broker, 'authentication failed from 127.0.0.1:')
    assert 'name "prober"' in broker.stderr_text()
    assert "acb_auth_failures_total 1" in broker.metrics()


def test_role_admin_needs_the_admin_token(broker):
    with pytest.raises(_wire.BrokerError, match="could not prove it holds the admin token"):
        _wire.Connection(broker.host, broker.port, role="admin", token=broker.token)
    s = raw_connect(broker)
    try:
        assert handshake(broker, s, token=broker.token, role="admin")["reason"] == "authentication failed"
    finally:
        s.close()
    with broker.admin() as admin:
        assert admin.welcome["device"] == -1
        admin.request({"op": "set_quantum", "quantum_ms": 7})


def test_acb_status_needs_only_the_client_token(broker, broker_bin, tmp_path):
    # Only the client token readable: the admin token file is absent. (As root,
    # mode 0 would not stop reading it, so the file is removed instead.)
    only_client = tmp_path / "tokens"
    only_client.mkdir(mode=0o700)
    shutil.copy(broker.token_dir / "token", only_client / "token")
    env = package_env(broker_bin, {"ACB_TOKEN_DIR": str(only_client)})
    address = f"{broker.host}:{broker.port}"
    result = run_cli(["status", "--json", "--broker", address], env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["devices"]
    # A wrong admin token beside the right client token does not matter to status:
    # it proves the client token and never touches the admin one.
    (only_client / "admin-token").write_text("f" * 64 + "\n")
    (only_client / "admin-token").chmod(0o600)  # private, so readable as a token file
    result = run_cli(["status", "--json", "--broker", address], env)
    assert result.returncode == 0, result.stderr
    assert "authentication failed" not in broker.stderr_text()
    # An admin operation still needs the admin token, and says so in one line.
    (only_client / "admin-token").unlink()
    result = run_cli(["drain", "0", "--broker", address], env)
    assert result.returncode == 1
    assert "admin-token" in result.stderr and result.stderr.count("\n") == 1
