"""Eager offload race, as a stress test: a busy job increments part of a
24 MiB tensor back to back while a second job reads its own tensor between
pauses (through an operator and through tolist(), which reads memory without
one), both under acb on one emulated device too small for both. The device
changes hands many times a second; every run, every increment must survive
the offloads and restores it went through, and the reader must never see
its memory missing.

ACB_RACE_RUNS (default 3) and ACB_RACE_INCREMENTS (default 3000) make the
test longer locally, ACB_RACE_BROKER_FLAGS replaces the broker's flags (e.g.
"--quantum-ms 200" for the default quantum and deadline); CI runs the
defaults (under a minute).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402
from conftest import read_line  # noqa: E402

pytest.importorskip("torch")

CAPACITY = "30MiB"
# Short quanta and deadlines: the busy job never idles, so it gives the
# device up only at a revoke's deadline; make that happen often.
BROKER_FLAGS = tuple(os.environ.get("ACB_RACE_BROKER_FLAGS", "--quantum-ms 20 --quantum-deadline-ms 40").split())
RUNS = int(os.environ.get("ACB_RACE_RUNS", "3"))
INCREMENTS = int(os.environ.get("ACB_RACE_INCREMENTS", "3000"))


def _start(env: dict, tmp: Path, name: str, *args: str):
    log = tmp / f"{name}.log"
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, *h.job("race_job.py", *args)], env=env,
                            stdout=subprocess.PIPE, stderr=out)
    out.close()
    return proc, log


def _event(proc, log: Path, event: str, timeout_s: float) -> dict:
    line = read_line(proc.stdout, timeout_s)
    if line is None:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{proc.args[-3:]}: no {event!r} within {timeout_s} s (exit {proc.returncode}); "
                             f"stderr:\n{log.read_text(errors='replace')[-4000:]}")
    out = json.loads(line)
    assert out["event"] == event, out
    return out


def _one_run(env: dict, tmp: Path) -> tuple:
    go, stop = tmp / "go", tmp / "stop"
    busy = _start(env, tmp, "busy", "busy", str(INCREMENTS), "--go", str(go))
    reader = _start(env, tmp, "read", "read", str(stop), "--go", str(go))
    try:
        _event(*busy, "ready", 120)
        _event(*reader, "ready", 120)
        go.touch()
        done = _event(*busy, "done", 240)
        print(json.dumps({"busy": {k: done[k] for k in ("short", "bad")}}))
        stop.touch()
        read_done = _event(*reader, "done", 60)
        for proc, log in (busy, reader):
            assert proc.wait(timeout=30) == 0, log.read_text(errors="replace")[-4000:]
        return done, read_done
    finally:
        for proc, _ in (busy, reader):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def test_busy_writes_survive_offloads_while_another_job_reads(broker_factory, tmp_path):
    root = h.require_package()
    device = h.device_spec(CAPACITY)
    broker = broker_factory("--device", device, *BROKER_FLAGS)
    env = h.acb_env(root, broker, device, ACB_ENABLE="0")
    failures = []
    offloads = reader_offloads = 0
    for run in range(RUNS):
        tmp = tmp_path / f"run{run}"
        tmp.mkdir()
        done, read_done = _one_run(env, tmp)
        s = done["status"]
        print(json.dumps({"run": run, "short": done["short"], "bad": done["bad"], "reads": read_done["reads"],
                          "offloads": s["offloads"], "reader_offloads": read_done["status"]["offloads"]}))
        offloads += s["offloads"]
        reader_offloads += read_done["status"]["offloads"]
        if done["bad"]:
            failures.append((run, done["short"], done["bad"]))
    assert not failures, f"runs with lost increments (run, increments short, any element wrong): {failures}"
    # The test proves something only if both jobs were offloaded and restored.
    assert offloads >= RUNS, f"only {offloads} offloads of the busy job in {RUNS} runs"
    assert reader_offloads >= RUNS, f"only {reader_offloads} offloads of the reader in {RUNS} runs"
