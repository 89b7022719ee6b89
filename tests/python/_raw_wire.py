"""The broker protocol spoken by hand over a plain socket, for the tests that
send what a well-behaved client never would (docs/protocol.md): frames, a
hello, and reading until the broker closes. Every read is bounded."""

from __future__ import annotations

import json
import os
import socket
import struct


def raw_connect(broker) -> socket.socket:
    s = socket.create_connection((broker.host, broker.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def frame(obj) -> bytes:
    payload = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack(">I", len(payload)) + payload


def hello(broker, **extra) -> dict:
    m = {"op": "hello", "versions": [1], "token": broker.token, "name": "raw", "pid": os.getpid()}
    m.update(extra)
    return m


def read_until_closed(s: socket.socket, timeout_s: float = 5.0) -> list:
    """Every frame the broker sends until it closes the connection (bounded)."""
    s.settimeout(timeout_s)
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        except TimeoutError:
            raise AssertionError(f"the broker kept the connection open for {timeout_s} s; got {data!r}")
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
