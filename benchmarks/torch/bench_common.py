"""Shared by the torch benchmarks: start a private broker with one device,
build job environments, run jobs and read their status files.

The device is emulated unless ACB_BENCH_DEVICE=cuda: then the jobs compute
on GPU 0 (`--device cuda`, deterministic cuBLAS as in the tests) and the
broker's device is that GPU, with the capacity the benchmark gives for CUDA
(working sets there include what cuBLAS allocates through torch)."""

from __future__ import annotations

import ctypes
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]
JOBS = ROOT / "tests" / "python" / "torch_jobs"
ON_CUDA = os.environ.get("ACB_BENCH_DEVICE", "emulated") == "cuda"


def figure(name: str, value: float, unit: str) -> None:
    print(f"FIGURE {name} {value:.4g} {unit}", flush=True)


def raw_copy_ms(nbytes: int, passes: int = 5) -> float:
    """The honest best case for moving nbytes: the fastest of `passes` memcpys
    (ctypes.memmove, libc) between two host buffers touched beforehand, in ms."""
    nbytes = max(1, int(nbytes))
    src, dst = bytearray(b"\x01" * nbytes), bytearray(nbytes)
    s = (ctypes.c_char * nbytes).from_buffer(src)
    d = (ctypes.c_char * nbytes).from_buffer(dst)
    best = math.inf
    for _ in range(passes):
        started = time.perf_counter()
        ctypes.memmove(d, s, nbytes)
        best = min(best, time.perf_counter() - started)
    return best * 1000


class Broker:
    """A private acb-broker (ephemeral port, own token directory) with one device:
    emulated with `capacity`, or GPU 0 with `cuda_capacity` (ACB_BENCH_DEVICE=cuda);
    or with `devices` emulated devices of `capacity` each."""

    def __init__(self, capacity: str, *flags: str, cuda_capacity: str = "", devices: int = 1) -> None:
        import acb
        from acb import _broker_process

        binary = Path(acb.__file__).resolve().parent / "bin" / "acb-broker"
        if not binary.is_file():
            raise SystemExit(f"benchmarks/torch: {binary} is missing; pip install the package first")
        self.workdir = Path(tempfile.mkdtemp(prefix="acb-bench-"))
        if ON_CUDA and devices != 1:
            raise SystemExit("benchmarks/torch: several devices are emulated only (ACB_BENCH_DEVICE=cuda has GPU 0)")
        self.devices = [f"gpu0:{cuda_capacity or capacity}"] if ON_CUDA else \
            [f"acbbench{uuid.uuid4().hex[:8]}:{capacity}" for _ in range(devices)]
        self.device = self.devices[0]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACB_")}
        env["ACB_TOKEN_DIR"] = str(self.workdir / "tokens")
        self.log = open(self.workdir / "broker.log", "wb")
        try:
            self.proc, listening = _broker_process.start(
                [str(binary), "--port", "0", "--metrics-port", "0",
                 *(arg for device in self.devices for arg in ("--device", device)), *flags], env, self.log, 20.0)
        except _broker_process.BrokerStartError as e:
            raise SystemExit(f"benchmarks/torch: {e}") from None
        self.address = listening.address

    def env(self, device: int = 0, **extra: str) -> Dict[str, str]:
        """A job's environment, on broker device `device` (of several: pinned there)."""
        env = plain_env()
        env.update({"ACB_TOKEN_DIR": str(self.workdir / "tokens"), "ACB_BROKER": self.address, "ACB_ENABLE": "1"})
        if not ON_CUDA:
            env["ACB_EMULATED_DEVICE"] = self.devices[device]
        if len(self.devices) > 1:
            env["ACB_DEVICE"] = str(device)
        env.update(extra)
        return env

    def close(self) -> None:
        from acb import _broker_process

        _broker_process.stop(self.proc)
        self.log.close()


def plain_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACB_")}
    env["OMP_NUM_THREADS"] = "1"
    if ON_CUDA:
        env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # the jobs use deterministic algorithms on CUDA
    return env


def job_cmd(script: str, *args: str) -> List[str]:
    return [sys.executable, str(JOBS / script), *args, *(("--device", "cuda") if ON_CUDA else ())]


def run_all(cmds: Sequence[Sequence[str]], envs: Sequence[Dict[str, str]], timeout_s: float = 300,
            barrier: Optional[Path] = None) -> None:
    """Runs the commands at once and waits for them; fails with the stderr of one that failed.

    With `barrier` (a fresh directory the commands were given as --barrier, see
    tests/python/torch_jobs/lockstep.py) they start their loops together once
    every one of them is ready, however long each took to start."""
    procs = [subprocess.Popen(list(c), env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for c, e in zip(cmds, envs)]
    if barrier is not None:
        deadline = time.monotonic() + timeout_s
        while sum(1 for n in os.listdir(barrier) if n.endswith(".ready")) < len(procs):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                break  # the failure is reported below
            time.sleep(0.02)  # polling the jobs' ready files
        (barrier / "go").touch()
    for p in procs:
        _, err = p.communicate(timeout=timeout_s)
        if p.returncode != 0:
            raise SystemExit(f"benchmarks/torch: {p.args} exited {p.returncode}: {err.decode()[-2000:]}")


def status(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)
