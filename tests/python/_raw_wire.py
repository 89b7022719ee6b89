"""The broker protocol spoken by hand over a plain socket, for the tests that
send what a well-behaved client never would (docs/protocol.md): frames, a
version 2 hello, the handshake with a chosen token, and reading until the
broker closes. Every read is bounded."""

from __future__ import annotations

import json
import os
import socket
import struct
import time

from acb import _handshake


def raw_connect(broker) -> socket.socket:
    s = socket.create_connection((broker.host, broker.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def frame(obj) -> bytes:
    payload = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack(">I", len(payload)) + payload


def hello(broker, nonce: bytes = b"", **extra) -> dict:
    """A version 2 hello: a nonce, never the token."""
    m = {"op": "hello", "versions": [2], "client_nonce": (nonce or _handshake.fresh_nonce()).hex(),
         "name": "raw", "pid": os.getpid()}
    m.update(extra)
    return m


def read_frame(s: socket.socket, timeout_s: float = 5.0) -> dict:
    """The next frame from the broker (bounded)."""
    s.settimeout(timeout_s)
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"the broker closed the connection; got {data!r}")
        data += chunk
    (size,) = struct.unpack(">I", data[:4])
    assert len(data) == 4 + size, "the broker sent more than one frame here"
    return json.loads(data[4:])


def handshake(broker, s: socket.socket, token: str = "", role: str = "client", **extra) -> dict:
    """hello, the broker's challenge (its proof checked), auth with `token`
    (default: the role's own); returns the broker's answer to auth."""
    nonce = _handshake.fresh_nonce()
    s.sendall(frame(hello(broker, nonce, role=role, **extra)))
    challenge = read_frame(s)
    assert challenge["op"] == "challenge", challenge
    broker_nonce = bytes.fromhex(challenge["broker_nonce"])
    right = broker.admin_token if role == "admin" else broker.token
    assert _handshake.proofs_equal(bytes.fromhex(challenge["broker_proof"]),
                                   _handshake.broker_proof(right, role, nonce, broker_nonce))
    proof = _handshake.client_proof(token or right, role, broker_nonce, nonce)
    s.sendall(frame({"op": "auth", "client_proof": proof.hex()}))
    return read_frame(s)


def read_until_closed(s: socket.socket, timeout_s: float = 5.0) -> list:
    """Every frame the broker sends until it closes the connection (bounded)."""
    s.settimeout(timeout_s)
    data = b""
    deadline = time.monotonic() + timeout_s  # a peer that trickles bytes is bounded too
    while True:
        if time.monotonic() >= deadline:
            raise AssertionError(f"the broker kept the connection open for {timeout_s} s; got {data!r}")
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        except TimeoutError:
            raise AssertionError(f"the broker kept the connection open for {timeout_s} s; got {data!r}") from None
        if not chunk:
            break
        data += chunk
    messages = []
    while len(data) >= 4:
        (size,) = struct.unpack(">I", data[:4])
        if len(data) < 4 + size:
            break
        messages.append(json.loads(data[4:4 + size]))
        data = data[4 + size:]
    return messages
