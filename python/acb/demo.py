"""`acb demo`: a few jobs take turns on one device, and a timeline of who held it when.

The orchestrator starts a broker, launches the jobs as separate processes
(`python -m acb._demo_job`): real PyTorch jobs sharing the device through
acb.enable() when torch and acb's extension are installed (on the GPU, or on
the emulated device without one), else jobs that only speak the broker
protocol (`--simulated` asks for those). Once every job has started (torch
imported, acb enabled) it tells them to go, waits for them, reads the
broker's lease trace and prints a timeline and a summary: the makespan
against running the jobs one after another, and against the ideal bound
(the total GPU time, or the longest job if that is longer).

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
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

from . import _broker_process, _format, _loader, _trace
from ._broker import broker_binary, ensure_broker, parse_address
from ._broker_process import read_line
from ._wire import BrokerError, Connection

START_TIMEOUT_S = 20.0
JOBS_START_TIMEOUT_S = 40.0  # torch's import takes seconds when jobs start together on a small machine
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
        try:
            with open(self.log, "wb") as log:
                self.proc, listening = _broker_process.start(
                    [broker_binary(), "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
                     "--device", device_spec], env, log, START_TIMEOUT_S)
        except _broker_process.BrokerStartError as e:
            message = f"the demo's broker did not start: {e}; its log: {self.log.read_text()[-500:]}"
            self.dir.cleanup()
            raise BrokerError(message) from None
        self.host, self.port = listening.host, listening.port

    def token(self, admin: bool) -> str:
        return (self.token_dir / ("admin-token" if admin else "token")).read_text().strip()

    def stop(self) -> None:
        _broker_process.stop(self.proc)
        self.dir.cleanup()


def _job_env(extra: Dict[str, str]) -> Dict[str, str]:
    env = {**os.environ, **extra}
    package_root = str(Path(__file__).resolve().parents[1])  # so `-m acb._demo_job` works uninstalled
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def job_plan(count: int) -> List[Tuple[str, str]]:
    """(name, priority) of each job: the first is an inference service, the rest training runs."""
    return [("inference", "inference")] + [(f"train-{i}", "training") for i in range(1, count)]


def torch_jobs_possible() -> bool:
    """Whether torch and acb's extension are installed (found, not imported: that takes seconds)."""
    return importlib.util.find_spec("torch") is not None and bool(_loader.module_files())


def run_jobs(host: str, port: int, env: Dict[str, str], args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Starts the jobs, lets them go together once all have started, waits; returns their reports."""
    procs = []
    for name, priority in job_plan(args.jobs):
        procs.append((name, priority, subprocess.Popen(
            [sys.executable, "-m", "acb._demo_job", host, str(port), name, priority, str(args.phases),
             str(args.gpu_ms), str(args.cpu_ms), args.kind],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_job_env(env))))
    reports: List[Dict[str, Any]] = []
    try:
        welcomes: Dict[str, Dict[str, Any]] = {}
        start_deadline = time.monotonic() + JOBS_START_TIMEOUT_S
        for name, _, proc in procs:
            assert proc.stdout is not None  # stdout=PIPE
            line = read_line(proc.stdout, start_deadline)
            if line is None:
                proc.kill()
                raise BrokerError(f"demo job {name} did not start within {JOBS_START_TIMEOUT_S:g} s: "
                                  f"{proc.communicate()[1].decode().strip()[-400:]}")
            welcomes[name] = json.loads(line)
        for _, _, proc in procs:
            assert proc.stdin is not None  # stdin=PIPE
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        deadline = time.monotonic() + JOBS_TIMEOUT_S
        for name, priority, proc in procs:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            if proc.returncode != 0:
                raise BrokerError(f"demo job {name} failed ({proc.returncode}): {err.decode().strip()[-400:]}")
            events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
            done = next(e for e in events if e["event"] == "done")
            # A torch job joins at its first operator, after its welcome: its "done" names the client it ran as.
            reports.append({"name": name, "priority": priority, **done,
                            "client_id": done.get("client_id") or welcomes[name]["client_id"]})
    except subprocess.TimeoutExpired:
        raise BrokerError(f"the demo jobs did not finish within {JOBS_TIMEOUT_S:g} s") from None
    finally:
        for _, _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return reports


def closed_trace(conn: Connection, clients: Set[int], timeout_s: float = 5.0) -> List[Dict[str, Any]]:
    """The broker's lease slices once the jobs' last leases are closed.

    A job that exits holding its lease (a torch job holds lazily) has it
    closed when the broker sees the connection end, which may be a moment
    after the process is gone: poll the trace until then (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        slices: List[Dict[str, Any]] = conn.request({"op": "trace"}).get("slices", [])
        still_open = [s for s in slices if s["client_id"] in clients and s["end_us"] is None]
        if not still_open:
            return slices
        if time.monotonic() > deadline:
            raise BrokerError(f"the broker still shows {len(still_open)} lease(s) of the demo's jobs open "
                              f"{timeout_s:g} s after they exited")
        time.sleep(0.02)  # a poll interval: the broker closes them on its own


def summarize(reports: List[Dict[str, Any]], slices: List[Dict[str, Any]], args: argparse.Namespace) -> Dict[str, Any]:
    """The account of one run. Baselines from the jobs' plan: a job alone takes
    phases x (GPU + CPU phase), so one after another they take that times the
    number of jobs; no schedule beats the total GPU time or the longest job."""
    ids = {r["client_id"] for r in reports}
    mine = [s for s in slices if s["client_id"] in ids]
    makespan_s = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    # Busy time within the run: the broker's clock has its own epoch, so the
    # window starts at the first lease (the jobs ask for the device as they
    # start) and lasts the makespan; a job that is done may hold lazily after.
    t0 = min((s["start_us"] for s in mine), default=0)
    window_end = t0 + makespan_s * 1e6
    held_s = sum(max(0.0, min(s["end_us"] or s["start_us"], window_end) - s["start_us"]) for s in mine) / 1e6
    job_alone_s = args.phases * (args.gpu_ms + args.cpu_ms) / 1000.0
    sequential_s = args.jobs * job_alone_s
    ideal_s = max(args.jobs * args.phases * args.gpu_ms / 1000.0, job_alone_s)
    return {
        "kind": args.kind,
        "jobs": reports,
        "leases": len(mine),
        "makespan_s": round(makespan_s, 3),
        "sequential_s": round(sequential_s, 3),
        "ideal_s": round(ideal_s, 3),
        "speedup": round(sequential_s / makespan_s, 2) if makespan_s else None,
        "efficiency": round(ideal_s / makespan_s, 2) if makespan_s else None,
        "device_busy_fraction": round(held_s / makespan_s, 3) if makespan_s else None,
        "slices": mine,
    }


def render(summary: Dict[str, Any], where: str) -> str:
    kind = "PyTorch jobs" if summary["kind"] == "torch" else "simulated jobs (no torch)"
    lines = [f"acb demo: {len(summary['jobs'])} {kind} shared one device ({where})", "",
             "who held the device when ('#' = holding the lease):",
             _trace.ascii_timeline(summary["slices"], width=64), ""]
    rows = [[r["name"], r["priority"], r["client_id"], _format.human_duration_us(r["wall_s"] * 1e6),
             _format.human_duration_us(r["waited_s"] * 1e6), r["revokes"]] for r in summary["jobs"]]
    lines.append(_format.table(["JOB", "PRIORITY", "CLIENT", "WALL", "WAITED", "REVOKED"], rows, right=(2, 3, 4, 5)))
    lines += ["",
              f"makespan {summary['makespan_s']:.2f} s with acb, {summary['sequential_s']:.2f} s one job after "
              f"another ({summary['speedup']:.2f}x faster), {summary['ideal_s']:.2f} s at best (total GPU time; "
              f"{100 * summary['efficiency']:.0f}% of ideal); the device was busy "
              f"{100 * summary['device_busy_fraction']:.0f}% of the time over {summary['leases']} leases"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1 or args.phases < 1 or args.gpu_ms < 1 or args.cpu_ms < 0:
        raise BrokerError("--jobs, --phases and --gpu-ms must be at least 1, --cpu-ms at least 0")
    args.kind = "simulated" if args.simulated or not torch_jobs_possible() else "torch"
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
        reports = run_jobs(host, port, env, args)
        with Connection(host, port, name="acb-demo", role="admin", token=admin_token) as conn:
            slices = closed_trace(conn, {r["client_id"] for r in reports})
    finally:
        if private is not None:
            private.stop()
    summary = summarize(reports, slices, args)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render(summary, where))
    return 0
