"""Shared pytest fixtures: a real acb-broker process and real client processes.

- `broker_bin`: the acb-broker executable (ACB_BROKER_BIN, else the installed
  package's acb/bin/acb-broker, else the newest build/*/broker_server/acb-broker).
- `broker_factory`: starts brokers on ephemeral ports with a private token
  directory (`preexec_fn` runs in the child before exec, e.g. to set
  rlimits); every broker is stopped at teardown, and the test fails if one
  crashed or did not exit 0 on SIGTERM. A broker started without --device
  does not probe the machine's GPUs (it gets the broker's single default
  device, GPU or not) unless the test asks for it with probe_gpu=True.
- `broker`: one broker with the default flags.
- `client_proc`: starts a client process (python running CLIENT_SCRIPT) that
  reports what happens to it on stdout, one JSON object per line.

Every wait is a bounded wait on a condition (a line, a frame, an exit).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]

if importlib.util.find_spec("acb") is None:
    sys.path.insert(0, str(ROOT / "python"))

from acb import _broker_process, _wire  # noqa: E402

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
# The CUDA library a broker that must not probe the GPUs is pointed at (ACB_CUDA_LIBRARY): none.
NO_CUDA_LIBRARY = "/nonexistent/acb-tests-do-not-probe/libcuda.so.1"


def _installed_broker() -> Optional[str]:
    spec = importlib.util.find_spec("acb")
    if spec is None or not spec.origin:
        return None
    candidate = Path(spec.origin).parent / "bin" / "acb-broker"
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def find_broker_bin() -> Optional[str]:
    env = os.environ.get("ACB_BROKER_BIN")
    if env:
        return env
    installed = _installed_broker()
    if installed:
        return installed
    built = [p for p in glob.glob(str(ROOT / "build" / "*" / "broker_server" / "acb-broker")) if os.access(p, os.X_OK)]
    return max(built, key=os.path.getmtime) if built else None


@pytest.fixture(scope="session")
def broker_bin() -> str:
    path = find_broker_bin()
    if path is None:
        pytest.skip("no acb-broker executable: set ACB_BROKER_BIN, pip install the package, "
                    "or build one (cmake --preset dev && cmake --build --preset dev --target acb-broker)")
    if not os.access(path, os.X_OK):
        pytest.skip(f"ACB_BROKER_BIN={path} is not an executable file")
    return path


def read_line(stream, timeout_s: float) -> Optional[str]:
    """One line from a pipe, or None when none arrives within timeout_s (or at EOF)."""
    return _broker_process.read_line(stream, time.monotonic() + timeout_s)


class Broker:
    """A running acb-broker process and what a test needs to talk to it."""

    def __init__(self, proc: subprocess.Popen, host: str, port: int, metrics_port: int,
                 token_dir: Path, stderr_path: Path) -> None:
        self.proc = proc
        self.host = host
        self.port = port
        self.metrics_port = metrics_port
        self.token_dir = token_dir
        self.stderr_path = stderr_path
        self.token = (token_dir / "token").read_text().strip()
        self.admin_token = (token_dir / "admin-token").read_text().strip()
        self.expect_exit: Optional[int] = None  # a test that ends the broker itself says how

    def connect(self, **kwargs) -> _wire.Connection:
        kwargs.setdefault("token", self.token)
        return _wire.Connection(self.host, self.port, **kwargs)

    def admin(self, **kwargs) -> _wire.Connection:
        kwargs.setdefault("name", "admin")
        return _wire.Connection(self.host, self.port, role="admin", token=self.admin_token, **kwargs)

    def metrics(self, path: str = "/metrics") -> str:
        with urllib.request.urlopen(f"http://{self.host}:{self.metrics_port}{path}", timeout=5) as r:
            return r.read().decode()

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_exit(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        return self.proc.wait(timeout=timeout_s)

    def alive(self) -> bool:
        return self.proc.poll() is None


def wait_for_stderr(broker: Broker, needle: str, timeout_s: float = 5.0) -> bool:
    """True once the broker's log contains needle (polls the log file, bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if needle in broker.stderr_text():
            return True
        time.sleep(0.02)
    return needle in broker.stderr_text()


@pytest.fixture
def broker_factory(broker_bin: str, tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    started: List[Broker] = []
    counter = [0]

    def start(*args: str, env: Optional[dict] = None, port: int = 0, metrics_port: int = 0,
              preexec_fn: Optional[Callable[[], None]] = None, probe_gpu: bool = False) -> Broker:
        counter[0] += 1
        workdir = tmp_path / f"broker{counter[0]}"
        token_dir = workdir / "tokens"
        workdir.mkdir()
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("ACB_TOKEN", "ACB_ADMIN_TOKEN", "ACB_EMULATED_DEVICE")}
        full_env["ACB_TOKEN_DIR"] = str(token_dir)
        if not probe_gpu and "--device" not in args:
            # Without --device the broker asks the CUDA driver for the node's
            # GPUs (device_probe.h): the same test would see other devices on
            # a GPU machine than here.
            full_env["ACB_CUDA_LIBRARY"] = NO_CUDA_LIBRARY
        full_env.update(env or {})
        stderr_path = workdir / "stderr.log"
        try:
            with open(stderr_path, "wb") as stderr:
                proc, listening = _broker_process.start(
                    [broker_bin, "--port", str(port), "--metrics-port", str(metrics_port), *args], full_env, stderr,
                    START_TIMEOUT_S, preexec_fn=preexec_fn)
        except _broker_process.BrokerStartError as e:
            pytest.fail(f"{e}; stderr:\n{stderr_path.read_text()}")
        b = Broker(proc, listening.host, listening.port, listening.metrics_port, token_dir, stderr_path)
        started.append(b)
        return b

    yield start

    problems = []
    for b in started:
        rc = b.proc.poll()
        if rc is None:
            rc = _broker_process.stop(b.proc, STOP_TIMEOUT_S)
            if rc is None:
                problems.append(f"broker pid {b.proc.pid} ignored SIGTERM for {STOP_TIMEOUT_S} s")
            elif rc != 0:
                problems.append(f"broker pid {b.proc.pid} exited {rc} on SIGTERM")
        else:
            _broker_process.stop(b.proc)  # reaped already: closes its stdout
            if b.expect_exit is None or rc != b.expect_exit:
                problems.append(f"broker pid {b.proc.pid} exited by itself with {rc} during the test")
        if problems and problems[-1].startswith(f"broker pid {b.proc.pid}"):
            problems[-1] += "; its stderr:\n" + b.stderr_text()[-4000:]
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory()


# A client process: connects, then follows its command line. Reports events
# on stdout as JSON lines with CLOCK_MONOTONIC times (shared by all processes
# on the machine), so a test can check that leases never overlap.
#   argv: host port token name mode hold_ms
#   mode "once": acquire, hold hold_ms (or until revoked), release, exit 0.
#   mode "hold": acquire, then keep the lease and heartbeat until killed.
CLIENT_SCRIPT = r'''
import json, socket, sys, time
from acb import _wire

host, port, token, name, mode, hold_ms = sys.argv[1:7]
conn = _wire.Connection(host, int(port), token=token, name=name, timeout_s=10)
interval = conn.welcome["heartbeat_interval_ms"] / 1000.0

def say(**event):
    event["t"] = time.monotonic()
    print(json.dumps(event), flush=True)

def next_message(deadline):
    """The next frame before deadline, heartbeating while waiting; None at the deadline."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            return conn.recv(timeout_s=min(interval, remaining))
        except (socket.timeout, TimeoutError):
            conn.send({"op": "heartbeat"})

say(event="welcome", client_id=conn.welcome["client_id"])
conn.send({"op": "acquire"})
while True:
    m = next_message(time.monotonic() + 60)
    if m is None:
        say(event="timeout"); sys.exit(3)
    if m["op"] == "grant":
        break
    if m["op"] in ("reject", "error"):
        say(event=m["op"], reason=m.get("reason")); sys.exit(4)
say(event="grant", lease=m["lease"], quantum_ms=m["quantum_ms"])
if mode == "hold":
    while True:
        m = next_message(time.monotonic() + 3600)
        if m is not None:
            say(event=m["op"], message=m)
end = time.monotonic() + int(hold_ms) / 1000.0
reason = "done"
while True:
    m = next_message(end)
    if m is None:
        break
    if m["op"] == "revoke":
        reason = "revoked"
        break
say(event="release", reason=reason)
conn.send({"op": "release", "resident_bytes": 0})
conn.close()
'''


class ClientProc:
    """A client process started from CLIENT_SCRIPT; events() reads its JSON lines."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.seen: List[dict] = []

    def wait_event(self, name: str, timeout_s: float = 10.0) -> dict:
        for event in self.seen:
            if event["event"] == name:
                return event
        deadline = time.monotonic() + timeout_s
        while True:
            line = read_line(self.proc.stdout, max(0.0, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"client pid {self.proc.pid} did not report {name!r} within {timeout_s} s; "
                                     f"saw {self.seen}, exit {self.proc.poll()}, stderr "
                                     f"{self.proc.stderr.read().decode() if self.proc.poll() is not None else ''}")
            event = json.loads(line)
            self.seen.append(event)
            if event["event"] == name:
                return event

    def finish(self, timeout_s: float = 20.0) -> List[dict]:
        out, err = self.proc.communicate(timeout=timeout_s)
        self.seen.extend(json.loads(line) for line in out.decode().splitlines() if line.strip())
        assert self.proc.returncode == 0, f"client exited {self.proc.returncode}: {err.decode()}"
        return self.seen


@pytest.fixture
def client_proc() -> Iterator[Callable[..., ClientProc]]:
    procs: List[ClientProc] = []
    env = dict(os.environ)
    if importlib.util.find_spec("acb") is None or str(ROOT / "python") in sys.path:
        env["PYTHONPATH"] = str(ROOT / "python") + os.pathsep + env.get("PYTHONPATH", "")

    def start(broker: Broker, name: str, mode: str = "once", hold_ms: int = 0) -> ClientProc:
        proc = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, broker.host, str(broker.port), broker.token,
                                 name, mode, str(hold_ms)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        c = ClientProc(proc)
        procs.append(c)
        return c

    yield start

    for c in procs:
        if c.proc.poll() is None:
            try:
                c.proc.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
            c.proc.kill()
        c.proc.wait()
        for stream in (c.proc.stdout, c.proc.stderr):
            if stream:
                stream.close()


def wait_for(conn: _wire.Connection, op: str, timeout_s: float = 5.0) -> dict:
    """The next message `op` on conn within timeout_s, heartbeating while waiting.

    Messages of other ops that arrive first are kept in conn.pending."""
    for i, m in enumerate(conn.pending):
        if m.get("op") == op:
            return conn.pending.pop(i)
    interval = max(0.01, conn.welcome.get("heartbeat_interval_ms", 1000) / 1000.0)
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {op!r} within {timeout_s} s (pending: {conn.pending})")
        try:
            m = conn.recv(timeout_s=min(interval, remaining))
        except TimeoutError:  # socket.timeout is TimeoutError since Python 3.10
            conn.send({"op": "heartbeat"})
            continue
        if m.get("op") == op:
            return m
        conn.pending.append(m)


def expect_silence(conn: _wire.Connection, op: str, duration_s: float) -> None:
    """Asserts that no `op` arrives on conn for duration_s (heartbeating meanwhile)."""
    try:
        m = wait_for(conn, op, duration_s)
    except AssertionError:
        return
    raise AssertionError(f"unexpected {op!r}: {m}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """ACB_REQUIRE_GPU=1 (on a machine that must run the gpu tests) turns a
    skipped gpu-marked test into a failure, so a missing GPU, CUDA build or
    Triton cannot pass for a green run."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("ACB_REQUIRE_GPU") == "1" and item.get_closest_marker("gpu"):
        report.outcome = "failed"
        report.longrepr = f"ACB_REQUIRE_GPU=1 but this gpu test was skipped: {report.longrepr}"
