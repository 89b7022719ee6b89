"""Helpers for the tests of the acb command, the embedded broker and the demo:
run `python -m acb.cli` (or any module) in a subprocess with the same acb
package this test process imports, and the broker executable under test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import acb
from conftest import NO_CUDA_LIBRARY


def package_env(broker_bin: str, extra: Optional[Dict[str, str]] = None,
                probe_gpu: bool = False) -> Dict[str, str]:
    """The environment of a subprocess using this acb and broker_bin. Unless
    probe_gpu, no CUDA library: a broker it starts without --device (the
    embedded one) gets its single default device instead of the machine's
    GPUs, as in conftest's broker_factory."""
    env = {k: v for k, v in os.environ.items() if k not in ("ACB_TOKEN", "ACB_ADMIN_TOKEN", "ACB_BROKER")}
    root = str(Path(acb.__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["ACB_BROKER_BIN"] = broker_bin
    if not probe_gpu:
        env["ACB_CUDA_LIBRARY"] = NO_CUDA_LIBRARY
    env.update(extra or {})
    return env


def run_cli(args: List[str], env: Dict[str, str], timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "acb.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s)


def free_port() -> int:
    """A port nobody listens on right now (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """True while pid runs (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def wait_until(condition, timeout_s: float) -> bool:
    """True once condition() is, polling every 20 ms for at most timeout_s (the
    other side runs on its own: a process, a broker)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())
