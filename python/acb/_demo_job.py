"""One job of `acb demo`: alternates GPU phases (holding the device's lease) and CPU phases.

    python -m acb._demo_job HOST PORT NAME PRIORITY PHASES GPU_MS CPU_MS

The GPU work is simulated: the job holds the lease for GPU_MS per phase. If
the broker revokes the lease (a higher priority job, or the quantum), the
job releases at once and asks again for the rest of its phase, as a real
job yields at a safe point. It reports on stdout, one JSON object per line:
{"event": "welcome", "client_id": N} first, {"event": "done", ...} last.
This is the file to replace with a real PyTorch job; demo.py only needs
those two lines.

With ACB_DEMO_TORCH=1 (and torch and acb's extension installed) the job is
a real PyTorch job instead: acb.enable() joins the same broker, each GPU
phase runs matrix products for GPU_MS (on CUDA, else on the emulated device,
ACB_EMULATED_DEVICE, defaulting to one named after the broker's port with the
broker's capacity), and acb itself gates, yields, offloads and restores.
"""

from __future__ import annotations

import json
import socket
import sys
import time

from ._wire import BrokerError, Connection


def say(**event) -> None:
    print(json.dumps(event), flush=True)


class Job:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.heartbeat_s = max(0.01, conn.welcome.get("heartbeat_interval_ms", 1000) / 1000.0)
        self.revoked = False

    def next_message(self, deadline: float):
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
            if m["op"] == "revoke":
                self.revoked = True
                return time.monotonic() - start

    def idle(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.next_message(end) is not None:
            pass  # nothing to do while not holding (e.g. a late revoke)


def torch_main(host: str, port: int, name: str, priority: str, phases: int, gpu_ms: int, cpu_ms: int) -> int:
    """The same job with real PyTorch work, shared through acb.enable()."""
    import os

    import torch

    import acb

    if not torch.cuda.is_available() and not os.environ.get("ACB_EMULATED_DEVICE"):
        probe = Connection(host, port, name=f"{name}-probe", priority=priority, timeout_s=10)
        capacity = int(probe.welcome.get("device_capacity_bytes") or (1 << 30))
        probe.close()
        os.environ["ACB_EMULATED_DEVICE"] = f"acbdemo{port}:{capacity}"
    os.environ.setdefault("ACB_NAME", name)
    acb.enable(priority=priority, broker=f"{host}:{port}")
    say(event="welcome", client_id=acb.status().client_id)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    w = torch.randn(256, 256, device=device)
    started = time.monotonic()
    for _ in range(phases):
        w = torch.tanh(w @ w * 0.01)  # the first op of a phase waits for the device
        end = time.monotonic() + gpu_ms / 1000.0
        while time.monotonic() < end:
            w = torch.tanh(w @ w * 0.01)
        if device == "cuda":
            torch.cuda.synchronize()
        end = time.monotonic() + cpu_ms / 1000.0
        while time.monotonic() < end:  # CPU phase: no tensors touched
            pass
    s = acb.status()
    say(event="done", wall_s=time.monotonic() - started, waited_s=s.wait_total_ms / 1000.0, revokes=s.revokes)
    return 0


def main(argv=None) -> int:
    host, port, name, priority, phases, gpu_ms, cpu_ms = (argv or sys.argv[1:])[:7]
    import os

    if os.environ.get("ACB_DEMO_TORCH") == "1":
        return torch_main(host, int(port), name, priority, int(phases), int(gpu_ms), int(cpu_ms))
    conn = Connection(host, int(port), name=name, priority=priority, timeout_s=10)
    job = Job(conn)
    say(event="welcome", client_id=conn.welcome["client_id"])
    waited = revokes = 0.0
    started = time.monotonic()
    for _ in range(int(phases)):
        left = int(gpu_ms) / 1000.0
        while left > 1e-4:
            t = time.monotonic()
            job.acquire()
            waited += time.monotonic() - t
            left -= job.hold(left)
            revokes += job.revoked
            conn.send({"op": "release", "resident_bytes": 0})
        job.idle(int(cpu_ms) / 1000.0)
    say(event="done", wall_s=time.monotonic() - started, waited_s=waited, revokes=int(revokes))
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
