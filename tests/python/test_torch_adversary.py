"""A fixed-seed randomized adversary (torch_jobs/adversary_job.py): two such
processes with different schedules share one emulated device that holds about
one working set; after every step each prints a checksum of every tensor, and
each line must equal the line of its own run without acb. Offloads and
restores are asserted to have happened in both."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402

pytest.importorskip("torch")

STEPS = os.environ.get("ACB_ADVERSARY_STEPS", "300")
SEEDS = ("11", "12")


def _lines(log: Path) -> list:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_randomized_adversary_matches_its_solo_run_step_by_step(broker_factory, tmp_path):
    root = h.require_package()
    cache = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    solo = []
    for seed in SEEDS:
        env = h.base_env(root)
        env.update(cache)
        log = tmp_path / f"solo{seed}.log"
        solo.append((h.start([sys.executable, *h.job("adversary_job.py", seed, STEPS)], env, log), log))
    for proc, log in solo:
        h.finish(proc, log, timeout_s=600)
    device = h.device_spec("24MiB")
    broker = broker_factory("--device", device, "--quantum-ms", "20")
    shared = []
    for seed in SEEDS:
        env = h.acb_env(root, broker, device, ACB_ENABLE="1", **cache)
        log = tmp_path / f"acb{seed}.log"
        shared.append((h.start([sys.executable, *h.job("adversary_job.py", seed, STEPS)], env, log), log))
    for proc, log in shared:
        h.finish(proc, log, timeout_s=600)
    for seed, (_, solo_log), (_, acb_log) in zip(SEEDS, solo, shared):
        expected, actual = _lines(solo_log), _lines(acb_log)
        status = actual.pop()["status"]
        assert len(actual) == len(expected) == int(STEPS), (seed, len(actual), len(expected))
        for want, got in zip(expected, actual):
            assert got == want, f"seed {seed}: step {want['step']} ({want['op']}) differs under acb; {status}"
        print(seed, json.dumps(status))
        assert status["offloads"] >= 1 and status["restored_bytes"] > 0, status
        assert status["switches"] >= 2, status
