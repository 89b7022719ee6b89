"""Finding a broker, and starting the embedded one when none answers.

`ensure_broker()` is what `acb.enable()`, `acb demo` and the command use: if
a broker answers at the configured address (ACB_BROKER, default
127.0.0.1:43210) it is used; otherwise this machine's embedded broker is
started there. Two processes that start at once must end up with one broker,
so the check-and-start runs under an flock on <token_dir>/broker.lock: the
second process waits for the lock, then finds the first one's broker
answering. The embedded broker is detached (its own session, output to
<token_dir>/broker.log) and exits by itself after ACB_EMBEDDED_IDLE_EXIT_S
seconds without clients, so nothing is left behind for long.

The directory may be a predictable path in /tmp, so it, the lock, the log and
the port file go through acb._private_files: a directory or file another user
planted, or a symlink, is a BrokerError naming the path, never used.

Nothing here runs at import time.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from . import _private_files, options
from ._private_files import WORLD_READ, PrivateFileError
from ._wire import TOKEN_DIR_FIX, token_dir
from ._wire import BrokerError as BrokerError  # also acb._broker's: enable() catches it from here

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_PROBE_TIMEOUT_S = 0.5
_LOG_TAIL_BYTES = 4096
# A bad lock, log or port file can only be one we left or one planted before the
# directory was private; either way it is safe to remove.
_FILE_FIX = "remove it, or set ACB_TOKEN_DIR to a private directory"


def parse_address(text: str) -> Tuple[str, int]:
    """'HOST:PORT' -> (host, port), the one reader of broker addresses in Python
    (ACB_BROKER, --broker, enable(broker=...)). An IPv6 host is written in
    brackets, '[::1]:43210', and returned without them. Raises BrokerError
    naming the text when it is not one."""
    host, sep, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]") and len(host) > 2:
        host = host[1:-1]
    elif ":" in host or "[" in host or "]" in host:
        raise BrokerError(f"broker address {text!r} is not HOST:PORT: write an IPv6 host in brackets, "
                          "e.g. [::1]:43210")
    if not sep or not host or not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise BrokerError(f"broker address {text!r} is not HOST:PORT (e.g. 127.0.0.1:43210 or [::1]:43210)")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    """(host, port) -> 'HOST:PORT', the text parse_address reads back: an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def configured_address() -> Tuple[str, int]:
    """The address from ACB_BROKER, else the default in the options table."""
    return parse_address(str(options.get("broker")))


def answers(host: str, port: int, timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
    """True when something accepts TCP connections at host:port (a broker, presumably)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def broker_binary() -> str:
    """The acb-broker executable: ACB_BROKER_BIN, else the one packaged in acb/bin,
    else (in a source checkout) the newest build/*/broker_server/acb-broker."""
    configured = str(options.get("broker_bin"))
    if configured:
        if not os.access(configured, os.X_OK):
            raise BrokerError(f"ACB_BROKER_BIN={configured} is not an executable file")
        return configured
    packaged = Path(__file__).resolve().parent / "bin" / "acb-broker"
    if os.access(packaged, os.X_OK):
        return str(packaged)
    root = Path(__file__).resolve().parents[2]
    built = [p for p in root.glob("build/*/broker_server/acb-broker") if os.access(p, os.X_OK)]
    if built:
        return str(max(built, key=lambda p: p.stat().st_mtime))
    raise BrokerError("no acb-broker executable: install acb with `pip install --no-build-isolation .`, "
                      "or set ACB_BROKER_BIN")


def _private_dir() -> Path:
    path = token_dir()
    try:
        _private_files.ensure_private_dir(path, "token directory", TOKEN_DIR_FIX)
    except PrivateFileError as e:
        raise BrokerError(str(e)) from e
    return Path(path)


def _open_private(path: Path, flags: int, what: str) -> int:
    """A descriptor on one of the embedded broker's files in the private directory, checked
    to be ours (not a symlink, nobody else may write it)."""
    try:
        return _private_files.open_private(str(path), flags, what, _FILE_FIX, WORLD_READ)
    except PrivateFileError as e:
        raise BrokerError(str(e)) from e


def _read_port_file(port_file: Path) -> Optional[Dict[str, Any]]:
    """The broker's port file, or None while it is not there (it is renamed into place whole)."""
    try:
        text = _private_files.read_private_file(str(port_file), "port file", _FILE_FIX, WORLD_READ)
    except PrivateFileError as e:
        raise BrokerError(str(e)) from e
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


def _log_tail(log: Path) -> List[str]:
    try:
        fd = _open_private(log, os.O_RDONLY, "broker log")
    except (BrokerError, FileNotFoundError):
        return []
    with os.fdopen(fd, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - _LOG_TAIL_BYTES))
        return f.read().decode(errors="replace").strip().splitlines()[-5:]


def broker_command(binary: str, host: str, port: int, port_file: Path) -> List[str]:
    """The embedded broker's command line."""
    command = [binary, "--host", host, "--port", str(port), "--metrics-port", "0",
               "--idle-exit-s", str(options.get("embedded_idle_exit_s")), "--port-file", str(port_file)]
    for spec in filter(None, (s.strip() for s in str(options.get("embedded_devices")).split(","))):
        command += ["--device", spec]
    return command


def _wait_started(proc: subprocess.Popen[bytes], host: str, port: int, port_file: Path, log: Path,
                  timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            info = _read_port_file(port_file)
        except BrokerError:
            proc.kill()  # its port file is not to be trusted, so neither is what listens
            raise
        if info is not None and info.get("pid") == proc.pid and answers(host, port):
            return
        rc = proc.poll()
        if rc is not None:
            raise BrokerError(f"the embedded acb broker exited with status {rc} at start; "
                              f"{log} ends with: " + " | ".join(_log_tail(log)))
        time.sleep(0.05)  # the broker is another process; its port file is the condition we poll
    proc.kill()
    raise BrokerError(f"the embedded acb broker did not listen on {host}:{port} within {timeout_s:g} s (log: {log})")


def _lock(path: Path, timeout_s: float) -> int:
    fd = _open_private(path, os.O_RDWR | os.O_CREAT, "lock file")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                os.close(fd)
                raise BrokerError(f"could not lock {path} within {timeout_s:g} s "
                                  "(another process is starting the embedded broker)") from e
            time.sleep(0.02)


def ensure_broker(address: Optional[str] = None) -> Tuple[str, int]:
    """(host, port) of a broker that answers: the one at `address` (default: ACB_BROKER or
    127.0.0.1:43210), started here as the embedded broker when none answers.

    Raises BrokerError when none answers at a remote address, or the start fails."""
    _started[:] = [p for p in _started if p.poll() is None]  # reap brokers that went idle and exited
    host, port = parse_address(address) if address else configured_address()
    if answers(host, port):
        return host, port
    if host not in _LOOPBACK:
        raise BrokerError(f"no acb broker at {host}:{port}; the embedded broker only starts on this machine "
                          "(start one there with `acb broker`)")
    directory = _private_dir()
    start_timeout_s = float(options.get("embedded_start_timeout_s"))
    lock = _lock(directory / "broker.lock", timeout_s=start_timeout_s + 5)
    try:
        if answers(host, port):  # another process started it while we waited for the lock
            return host, port
        log = directory / "broker.log"
        port_file = directory / f"broker-{port}.json"
        try:
            port_file.unlink()
        except FileNotFoundError:
            pass
        with os.fdopen(_open_private(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "broker log"), "ab") as out:
            proc = subprocess.Popen(broker_command(broker_binary(), host, port, port_file),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, close_fds=True)
        _started.append(proc)
        _wait_started(proc, host, port, port_file, log, start_timeout_s)
        return host, port
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)


# Popen objects of brokers this process started: kept so that Python reaps
# them (no zombie) if they exit while this process still runs.
_started: List[subprocess.Popen[bytes]] = []
