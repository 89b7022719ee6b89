"""`acb demo`: a few jobs take turns on one device, and a timeline of who held it when.

The orchestrator starts a broker, launches the jobs as separate processes
(`python -m acb._demo_job`, one file that a real PyTorch job can replace),
waits for them, then reads the broker's lease trace and prints a timeline
and a summary: the makespan against running the jobs one after another.

Which broker: by default a *private* broker on an ephemeral port with its
own token directory, stopped at the end. The demo then never disturbs (or
waits behind) real jobs on a shared broker, its trace holds only its own
leases, and it can read the admin token it needs for the trace. `--embedded`
uses the machine's embedded broker instead (started if none answers), and
`--broker HOST:PORT` a given one; the timeline is then filtered to the
demo's own jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import _format, _trace
from ._broker import broker_binary, ensure_broker, parse_address
from ._wire import BrokerError, Connection

START_TIMEOUT_S = 20.0
JOBS_TIMEOUT_S = 50.0  # the demo must finish within a minute


class PrivateBroker:
    """An acb-broker on an ephemeral port with a private token directory; stop() ends it."""

    def __init__(self, device_spec: str = "demo-gpu:16GiB") -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="acb-demo-")
        self.token_dir = Path(self.dir.name) / "tokens"
        env = {k: v for k, v in os.environ.items() if k not in ("ACB_TOKEN", "ACB_ADMIN_TOKEN")}
        env["ACB_TOKEN_DIR"] = str(self.token_dir)
        self.env = env
        self.log = Path(self.dir.name) / "broker.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([broker_binary(), "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
                                          "--device", device_spec], stdout=subprocess.PIPE, stderr=log, env=env)
        line = self._first_line(START_TIMEOUT_S)
        if not line.startswith("acb-broker listening on "):
            self.stop()
            raise BrokerError(f"the demo's broker did not start: {line or self.log.read_text()[-500:]}")
        self.host, port = line.split()[3].rsplit(":", 1)
        self.port = int(port)

    def _first_line(self, timeout_s: float) -> str:
        deadline, data = time.monotonic() + timeout_s, b""
        fd = self.proc.stdout.fileno()
        while not data.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(fd, 256)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace").strip()

    def token(self, admin: bool) -> str:
        return (self.token_dir / ("admin-token" if admin else "token")).read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.dir.cleanup()


def _job_env(extra: Dict[str, str]) -> Dict[str, str]:
    env = {**os.environ, **extra}
    package_root = str(Path(__file__).resolve().parents[1])  # so `-m acb._demo_job` works uninstalled
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def job_plan(count: int) -> List[Tuple[str, str]]:
    """(name, priority) of each job: the first is an inference service, the rest training runs."""
    return [("inference", "inference")] + [(f"train-{i}", "training") for i in range(1, count)]


def run_jobs(host: str, port: int, env: Dict[str, str], args: argparse.Namespace) -> Tuple[List[dict], float]:
    """Starts the jobs together, waits for them; returns their reports and the makespan in seconds."""
    procs = []
    start = time.monotonic()
    for name, priority in job_plan(args.jobs):
        procs.append((name, priority, subprocess.Popen(
            [sys.executable, "-m", "acb._demo_job", host, str(port), name, priority, str(args.phases),
             str(args.gpu_ms), str(args.cpu_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_job_env(env))))
    reports = []
    deadline = start + JOBS_TIMEOUT_S
    try:
        for name, priority, proc in procs:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            if proc.returncode != 0:
                raise BrokerError(f"demo job {name} failed ({proc.returncode}): {err.decode().strip()[-400:]}")
            events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
            welcome = next(e for e in events if e["event"] == "welcome")
            done = next(e for e in events if e["event"] == "done")
            reports.append({"name": name, "priority": priority, "client_id": welcome["client_id"], **done})
    except subprocess.TimeoutExpired:
        raise BrokerError(f"the demo jobs did not finish within {JOBS_TIMEOUT_S:g} s") from None
    finally:
        for _, _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return reports, time.monotonic() - start


def summarize(reports: List[dict], slices: List[dict], makespan_s: float, args: argparse.Namespace) -> dict:
    ids = {r["client_id"] for r in reports}
    mine = [s for s in slices if s["client_id"] in ids]
    held_s = sum(((s["end_us"] or s["start_us"]) - s["start_us"]) for s in mine) / 1e6
    sequential_s = args.jobs * args.phases * (args.gpu_ms + args.cpu_ms) / 1000.0
    return {
        "jobs": reports,
        "leases": len(mine),
        "makespan_s": round(makespan_s, 3),
        "sequential_s": round(sequential_s, 3),
        "speedup": round(sequential_s / makespan_s, 2) if makespan_s else None,
        "device_busy_fraction": round(held_s / makespan_s, 3) if makespan_s else None,
        "slices": mine,
    }


def render(summary: dict, where: str) -> str:
    lines = [f"acb demo: {len(summary['jobs'])} jobs shared one device ({where})", "",
             "who held the device when ('#' = holding the lease):",
             _trace.ascii_timeline(summary["slices"], width=64), ""]
    rows = [[r["name"], r["priority"], r["client_id"], _format.human_duration_us(r["wall_s"] * 1e6),
             _format.human_duration_us(r["waited_s"] * 1e6), r["revokes"]] for r in summary["jobs"]]
    lines.append(_format.table(["JOB", "PRIORITY", "CLIENT", "WALL", "WAITED", "REVOKED"], rows, right=(2, 3, 4, 5)))
    lines += ["",
              f"makespan {summary['makespan_s']:.2f} s with acb, {summary['sequential_s']:.2f} s one job after "
              f"another ({summary['speedup']:.2f}x); the device was busy "
              f"{100 * summary['device_busy_fraction']:.0f}% of the time over {summary['leases']} leases"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1 or args.phases < 1 or args.gpu_ms < 1 or args.cpu_ms < 0:
        raise BrokerError("--jobs, --phases and --gpu-ms must be at least 1, --cpu-ms at least 0")
    private: Optional[PrivateBroker] = None
    try:
        if args.broker or args.embedded:
            host, port = parse_address(args.broker) if args.broker else ensure_broker()
            env: Dict[str, str] = {}
            admin_token = None  # from ACB_ADMIN_TOKEN or the token directory
            where = f"{'embedded broker' if args.embedded and not args.broker else 'broker'} at {host}:{port}"
        else:
            private = PrivateBroker()
            host, port = private.host, private.port
            env = {"ACB_TOKEN_DIR": str(private.token_dir)}
            admin_token = private.token(admin=True)
            where = f"private broker on {host}:{port}"
        reports, makespan_s = run_jobs(host, port, env, args)
        with Connection(host, port, name="acb-demo", role="admin", token=admin_token) as conn:
            slices = conn.request({"op": "trace"}).get("slices", [])
    finally:
        if private is not None:
            private.stop()
    summary = summarize(reports, slices, makespan_s, args)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render(summary, where))
    return 0
