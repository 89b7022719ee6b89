"""One job of `acb demo`: alternates GPU phases and CPU phases.

    python -m acb._demo_job HOST PORT NAME PRIORITY PHASES GPU_MS CPU_MS [torch|simulated]

torch (what the demo runs when torch and acb's extension are installed): a
real PyTorch job. acb.enable() joins the broker; each GPU phase runs matrix
products until it has had GPU_MS of device time (time blocked waiting for
the device does not count), on CUDA, else on the emulated device
(ACB_EMULATED_DEVICE, defaulting to one named after the broker's port with
the broker's capacity); acb itself gates, yields, offloads and restores.
Each CPU phase waits CPU_MS without touching tensors (loading data, waiting
for users): on the emulated device the device *is* the CPU, and CPU work
would compete with the other jobs' device phases for the same cores.

simulated: no torch; the job speaks the broker protocol itself and holds
the lease for GPU_MS per phase, releasing it at the phase's end. If the
broker revokes the lease with a deadline it releases at once and asks again
for the rest of its phase, as a real job yields at a safe point; a revoke
without a deadline asks it to yield when idle, and it is busy until the
phase ends, so it keeps the lease until then, as a real job does.

Both report on stdout, one JSON object per line: {"event": "welcome",
"client_id": N} once started, then they wait for a line "go" on stdin (so
that every job's start-up, torch's import included, is over before the
demo's clock starts), and {"event": "done", ...} last, with "started" and
"ended" on the system-wide monotonic clock and the "client_id" it ran as
(a torch job joins the broker at its first operator, after "go": its
welcome says 0).
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any, Optional, Sequence

from . import options
from ._wire import BrokerError, Connection, Message


def say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


class Job:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.heartbeat_s = max(0.01, conn.welcome.get("heartbeat_interval_ms", 1000) / 1000.0)
        self.revoked = False

    def next_message(self, deadline: float) -> Optional[Message]:
        """The next frame before deadline (None at the deadline), heartbeating meanwhile."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                return self.conn.recv(timeout_s=min(self.heartbeat_s, remaining))
            except (socket.timeout, TimeoutError):
                self.conn.send({"op": "heartbeat"})

    def acquire(self) -> None:
        self.conn.send({"op": "acquire"})
        while True:
            m = self.next_message(time.monotonic() + 3600)
            if m is None:
                continue
            if m["op"] == "grant":
                self.revoked = False
                return
            if m["op"] in ("reject", "error"):
                raise BrokerError(f"acquire refused: {m.get('reason')}")

    def hold(self, seconds: float) -> float:
        """Holds the lease up to `seconds`; returns the time held (less when revoked)."""
        start = time.monotonic()
        end = start + seconds
        while True:
            m = self.next_message(end)  # the simulated GPU phase: the lease is held meanwhile
            if m is None:
                return time.monotonic() - start
            if m["op"] == "revoke" and m.get("deadline_ms") is not None:
                self.revoked = True
                return time.monotonic() - start
            # A revoke without a deadline: yield when idle, at the phase's end.

    def idle(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.next_message(end) is not None:
            pass  # nothing to do while not holding (e.g. a late revoke)


def wait_for_go() -> None:
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("demo job: expected 'go' on stdin")


def torch_main(host: str, port: int, name: str, priority: str, phases: int, gpu_ms: int, cpu_ms: int) -> int:
    """The job with real PyTorch work, shared through acb.enable()."""
    import os

    import torch

    import acb

    if not torch.cuda.is_available() and not options.get("emulated_device"):
        probe = Connection(host, port, name=f"{name}-probe", priority=priority, timeout_s=10)
        capacity = int(probe.welcome.get("device_capacity_bytes") or (1 << 30))
        probe.close()
        os.environ["ACB_EMULATED_DEVICE"] = f"acbdemo{port}:{capacity}"
    os.environ.setdefault("ACB_NAME", name)
    acb.enable(priority=priority, broker=f"{host}:{port}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    say(event="welcome", client_id=acb.status().client_id)
    wait_for_go()
    started = time.monotonic()
    torch.manual_seed(0)
    w = torch.randn(256, 256, device=device)  # the job's first operator: it asks for the device
    for _ in range(phases):
        phase_start, waited_before = time.monotonic(), acb.status().wait_total_ms
        while True:
            w = torch.tanh(w @ w * 0.01)  # the first op of a phase may wait for the device
            if device == "cuda":
                torch.cuda.synchronize()
            waited_s = (acb.status().wait_total_ms - waited_before) / 1000.0
            if time.monotonic() - phase_start - waited_s >= gpu_ms / 1000.0:
                break
        time.sleep(cpu_ms / 1000.0)  # CPU phase: no tensors touched
    ended = time.monotonic()
    s = acb.status()
    say(event="done", client_id=s.client_id, started=started, ended=ended, wall_s=ended - started,
        waited_s=s.wait_total_ms / 1000.0, revokes=s.revokes, offloads=s.offloads, restored_bytes=s.restored_bytes)
    return 0


def simulated_main(host: str, port: int, name: str, priority: str, phases: int, gpu_ms: int, cpu_ms: int) -> int:
    conn = Connection(host, port, name=name, priority=priority, timeout_s=10)
    job = Job(conn)
    say(event="welcome", client_id=conn.welcome["client_id"])
    wait_for_go()
    waited = revokes = 0.0
    started = time.monotonic()
    for _ in range(phases):
        left = gpu_ms / 1000.0
        while left > 1e-4:
            t = time.monotonic()
            job.acquire()
            waited += time.monotonic() - t
            left -= job.hold(left)
            revokes += job.revoked
            conn.send({"op": "release", "resident_bytes": 0})
        job.idle(cpu_ms / 1000.0)
    ended = time.monotonic()
    say(event="done", started=started, ended=ended, wall_s=ended - started, waited_s=waited, revokes=int(revokes))
    conn.close()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(argv or sys.argv[1:])
    host, port, name, priority, phases, gpu_ms, cpu_ms = args[:7]
    kind = args[7] if len(args) > 7 else "simulated"
    run = {"torch": torch_main, "simulated": simulated_main}.get(kind)
    if run is None:
        raise SystemExit(f"demo job: kind is torch or simulated, not {kind!r}")
    return run(host, int(port), name, priority, int(phases), int(gpu_ms), int(cpu_ms))


if __name__ == "__main__":
    sys.exit(main())
