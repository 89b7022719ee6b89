"""The broker protocol from Python (docs/protocol.md): length-prefixed JSON frames.

Used by the `acb` command (status, admin), the demo's simulated jobs and the
tests. The user processes' lease traffic goes through the C++ client in acb._C.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
from typing import Any, Dict, List, Optional

from . import _handshake, _private_files, options

MAX_FRAME_BYTES = 1 << 20
PROTOCOL_VERSION = 2

#: one protocol message: a JSON object, as decoded
Message = Dict[str, Any]


class BrokerError(RuntimeError):
    """The broker refused a request, closed the connection, or could not be reached."""


# What to do about a token directory or token file that is not private; the same
# words as csrc/common/token.cpp.
TOKEN_DIR_FIX = "remove it, or set ACB_TOKEN_DIR to a private directory (mode 0700, yours)"
TOKEN_FILE_FIX = "remove it (the broker makes a new one at its next start), or set ACB_TOKEN / ACB_ADMIN_TOKEN"


def token_dir() -> str:
    """Where the token files live (the same rule as csrc/common/token.h, nowhere else)."""
    configured = str(options.get("token_dir"))
    if configured:
        return configured
    if os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "acb")
    return f"/tmp/acb-{os.getuid()}"


def read_token(admin: bool = False) -> str:
    """The client (or admin) token: ACB_TOKEN / ACB_ADMIN_TOKEN, else its file, checked to be
    private (acb._private_files): a planted or readable-by-others file is a BrokerError."""
    option = options.find("admin_token" if admin else "token")
    given = options.raw(option.name)
    if given:
        return given
    directory = token_dir()
    path = os.path.join(directory, "admin-token" if admin else "token")
    try:
        text = None
        if _private_files.check_private_dir(directory, "token directory", TOKEN_DIR_FIX):
            text = _private_files.read_private_file(path, "token file", TOKEN_FILE_FIX)
    except _private_files.PrivateFileError as e:
        raise BrokerError(str(e)) from e
    if text is None:
        raise BrokerError(f"cannot read the acb token from {path}: No such file or directory "
                          f"(start a broker once, or set {option.env})")
    token = text.strip()
    if not token:
        raise BrokerError(f"token file {path} is empty: {TOKEN_FILE_FIX}")
    return token


def encode(message: Message) -> bytes:
    payload = json.dumps(message, separators=(",", ":")).encode()
    if len(payload) > MAX_FRAME_BYTES:
        raise ValueError(f"message of {len(payload)} bytes exceeds the frame maximum of {MAX_FRAME_BYTES}")
    return struct.pack(">I", len(payload)) + payload


class Connection:
    """One connection to the broker, authenticated both ways. Not thread-safe.

    The hello carries a fresh nonce, never the token; the broker's challenge
    must prove that it holds the token of `role` before this side sends its
    own proof (acb._handshake). A peer that cannot is not the broker:
    BrokerError naming the address, and nothing derived from the token has
    been sent to it."""

    def __init__(self, host: str, port: int, *, name: str = "acb-cli", role: str = "client",
                 token: Optional[str] = None, priority: str = "training", need_bytes: int = 0,
                 device: int = -1, device_uuid: str = "", timeout_s: float = 5.0) -> None:
        self._seq = itertools.count(1)
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as e:
            raise BrokerError(f"cannot reach the acb broker at {host}:{port}: {e}") from e
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""
        self.pending: List[Message] = []
        try:
            if token is None:
                token = read_token(admin=(role == "admin"))
            hello = {"name": name, "pid": os.getpid(), "role": role, "priority": priority,
                     "need_bytes": need_bytes, "device": device}
            if device_uuid:
                hello["device_uuid"] = device_uuid  # the broker maps the GPU's UUID to its device
            self.welcome = self._authenticate(f"{host}:{port}", token, role, hello)
        except BaseException:
            self.close()
            raise

    def _authenticate(self, address: str, token: str, role: str, hello: Message) -> Message:
        """hello -> challenge (checked) -> auth -> welcome; returns the welcome."""
        client_nonce = _handshake.fresh_nonce()
        try:
            self.send({"op": "hello", "versions": [PROTOCOL_VERSION], "client_nonce": client_nonce.hex(), **hello})
        except (BrokenPipeError, ConnectionResetError):
            # The broker may refuse a hello (too large, malformed) and close
            # before all of it was sent: its error frame is already here to read.
            pass
        challenge = self.recv()
        if challenge.get("op") == "error":
            raise BrokerError(f"broker refused the connection: {challenge.get('reason', challenge)}")
        broker_nonce = _handshake.parse_hex32(challenge.get("broker_nonce"))
        proof = _handshake.parse_hex32(challenge.get("broker_proof"))
        if (challenge.get("op") != "challenge" or broker_nonce is None or proof is None or
                not _handshake.proofs_equal(proof, _handshake.broker_proof(token, role, client_nonce, broker_nonce))):
            raise BrokerError(f"the process at {address} is not the acb broker: it could not prove it holds the "
                              f"{role} token, so nothing derived from the token was sent to it; another program "
                              f"may hold the broker's port while the broker is down, or the broker uses other "
                              f"tokens than this process (ACB_TOKEN_DIR, ACB_TOKEN, ACB_ADMIN_TOKEN)")
        client_proof = _handshake.client_proof(token, role, broker_nonce, client_nonce)
        self.send({"op": "auth", "client_proof": client_proof.hex()})
        welcome = self.recv()
        if welcome.get("op") != "welcome":
            raise BrokerError(f"broker refused the connection: {welcome.get('reason', welcome)}")
        return welcome

    def send(self, message: Message) -> None:
        self.sock.sendall(encode(message))

    def _read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise BrokerError("the broker closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def recv(self, timeout_s: Optional[float] = None) -> Message:
        """The next message from the broker (blocks up to timeout_s; None keeps the socket's)."""
        if timeout_s is not None:
            self.sock.settimeout(timeout_s)
        (size,) = struct.unpack(">I", self._read_exact(4))
        if size > MAX_FRAME_BYTES:
            raise BrokerError(f"broker sent a frame of {size} bytes, above the maximum")
        message: Message = json.loads(self._read_exact(size))
        return message

    def request(self, message: Message, timeout_s: float = 5.0) -> Message:
        """Sends a request with a fresh seq and returns the reply with that seq.

        Messages that arrive in between (grant, revoke, evict) are kept in `pending`."""
        seq = next(self._seq)
        self.send({**message, "seq": seq})
        while True:
            reply = self.recv(timeout_s)
            if reply.get("seq") == seq:
                if reply.get("op") == "error":
                    raise BrokerError(reply.get("reason", "request failed"))
                return reply
            self.pending.append(reply)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
