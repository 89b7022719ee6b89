"""The proofs of the broker handshake (protocol version 2; docs/protocol.md,
"Authentication and roles"), the same as csrc/common/handshake.h:

    broker_proof = HMAC-SHA256(token, b"acb-broker-v2" 0x00 role 0x00 client_nonce broker_nonce)
    client_proof = HMAC-SHA256(token, b"acb-client-v2" 0x00 role 0x00 broker_nonce client_nonce)

The key is the token's text as read (UTF-8), role is "client" or "admin", and
each nonce is 32 bytes from the OS CSPRNG, fresh for every connection. On the
wire nonces and proofs are 64 lowercase hex digits, and nothing else is
accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Optional

NONCE_BYTES = 32
ROLES = ("client", "admin")
_BROKER_LABEL = b"acb-broker-v2"
_CLIENT_LABEL = b"acb-client-v2"
_HEX32 = re.compile(r"[0-9a-f]{64}")


def fresh_nonce() -> bytes:
    """32 bytes from the OS CSPRNG."""
    return secrets.token_bytes(NONCE_BYTES)


def _proof(label: bytes, token: str, role: str, first: bytes, second: bytes) -> bytes:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    if len(first) != NONCE_BYTES or len(second) != NONCE_BYTES:
        raise ValueError(f"nonces are {NONCE_BYTES} bytes")
    message = label + b"\0" + role.encode() + b"\0" + first + second
    return hmac.new(token.encode(), message, hashlib.sha256).digest()


def broker_proof(token: str, role: str, client_nonce: bytes, broker_nonce: bytes) -> bytes:
    """What the broker's challenge carries: it holds `token`."""
    return _proof(_BROKER_LABEL, token, role, client_nonce, broker_nonce)


def client_proof(token: str, role: str, broker_nonce: bytes, client_nonce: bytes) -> bytes:
    """What the client's auth carries: it holds `token`."""
    return _proof(_CLIENT_LABEL, token, role, broker_nonce, client_nonce)


def proofs_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a, b)


def parse_hex32(value: object) -> Optional[bytes]:
    """The 32 bytes of exactly 64 lowercase hex digits; None for anything else."""
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        return None
    return bytes.fromhex(value)
