"""An acb-broker run as a child process: starting it, reading where it listens, stopping it.

The broker prints one line on stdout once it serves (broker_server/main.cpp):

    acb-broker listening on HOST:PORT metrics HOST:MPORT

and logs to stderr. `start` runs a broker command, waits (bounded) for that
line and returns the process with where it listens; `stop` ends it. The
demo's private broker, the test suite's broker fixture and the benchmarks'
brokers all start theirs here, so the line is read in one place. (The
embedded broker, `_broker.ensure_broker`, is found through its port file
instead: other processes must find it too.)
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Dict, Optional, Sequence, Tuple

from ._broker import format_address

LISTENING = "acb-broker listening on "


class BrokerStartError(RuntimeError):
    """The broker exited, or printed something else, before saying where it listens."""


@dataclass(frozen=True)
class Listening:
    host: str
    port: int
    metrics_port: int

    @property
    def address(self) -> str:
        """HOST:PORT as ACB_BROKER takes it ([HOST]:PORT for an IPv6 address)."""
        return format_address(self.host, self.port)


def parse_listening(line: str) -> Optional[Listening]:
    """The address in the broker's first line; None when the line is not that line."""
    if not line.startswith(LISTENING):
        return None
    words = line.split()
    if len(words) != 6 or words[4] != "metrics":
        return None
    try:
        host, port = words[3].rsplit(":", 1)
        metrics_port = words[5].rsplit(":", 1)[1]
        return Listening(host.strip("[]"), int(port), int(metrics_port))
    except (IndexError, ValueError):
        return None


def read_line(stream: IO[bytes], deadline: float) -> Optional[str]:
    """One line of a pipe, without its newline, before `deadline` (time.monotonic()); None at the
    deadline or at end of file.

    Reads unbuffered, a byte at a time, so that nothing after the line is taken
    from the pipe: what the process prints later is still there for the caller."""
    fd, data = stream.fileno(), b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return None
        byte = os.read(fd, 1)
        if not byte:
            return None
        data += byte
    return data[:-1].decode(errors="replace")


def start(command: Sequence[str], env: Dict[str, str], stderr: IO[Any], timeout_s: float,
          preexec_fn: Optional[Callable[[], None]] = None) -> Tuple[subprocess.Popen[bytes], Listening]:
    """Runs `command` (an acb-broker and its flags) and waits up to `timeout_s` for it to listen.

    `stderr`: a file the broker logs to. On failure the process is ended and
    BrokerStartError says what it printed instead."""
    proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=stderr, env=env, preexec_fn=preexec_fn)
    assert proc.stdout is not None  # stdout=PIPE
    line = read_line(proc.stdout, time.monotonic() + timeout_s)
    listening = parse_listening(line or "")
    if listening is None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        raise BrokerStartError(f"acb-broker did not start: its first line was {line!r} "
                               f"(exit status {proc.returncode})")
    return proc, listening


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> Optional[int]:
    """SIGTERM, then SIGKILL after `timeout_s`; the exit status, or None when it had to be killed.

    A broker that already exited is only reaped. Closes its stdout."""
    rc = proc.poll()
    if rc is None:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
    if proc.stdout:
        proc.stdout.close()
    return rc
