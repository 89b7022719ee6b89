"""`acb demo`: jobs take turns on one device of a private broker; the account
of who held it when matches what the jobs did."""

from __future__ import annotations

import json

import pytest

from _cli_helpers import package_env, run_cli
from acb import _loader

SMALL = ["--jobs", "3", "--phases", "2", "--gpu-ms", "100", "--cpu-ms", "100"]


def check_turns(summary: dict, gpu_s: float) -> None:
    """One holder at a time, and every job held the device for all its GPU phases."""
    jobs = summary["jobs"]
    slices = sorted(summary["slices"], key=lambda s: s["start_us"])
    assert {s["client_id"] for s in slices} == {j["client_id"] for j in jobs}
    assert len({s["device"] for s in slices}) == 1
    for before, after in zip(slices, slices[1:]):
        assert before["end_us"] is not None and before["end_us"] <= after["start_us"]
    for job in jobs:
        held_us = sum(s["end_us"] - s["start_us"] for s in slices if s["client_id"] == job["client_id"])
        assert held_us >= 0.9 * gpu_s * 1e6, (job, held_us)


def test_demo_jobs_take_turns_and_the_timeline_accounts_for_them(broker_bin, tmp_path):
    result = run_cli(["demo", *SMALL, "--simulated", "--json"],
                     package_env(broker_bin, {"ACB_TOKEN_DIR": str(tmp_path)}), timeout_s=60)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["kind"] == "simulated"
    jobs = summary["jobs"]
    assert [j["priority"] for j in jobs] == ["inference", "training", "training"]
    check_turns(summary, gpu_s=2 * 0.1)
    assert summary["sequential_s"] == pytest.approx(3 * 2 * 0.2)
    assert summary["ideal_s"] == pytest.approx(3 * 2 * 0.1)
    # The demo's broker was private and is gone: nothing was left in the user's token directory.
    assert not (tmp_path / "broker.log").exists()


def test_demo_runs_real_pytorch_jobs_through_acb(broker_bin, tmp_path):
    """With torch and the extension installed (as in CI) the demo's jobs are
    PyTorch programs: acb.enable() gates their operators, and the broker's
    timeline shows them taking turns for all their device phases."""
    pytest.importorskip("torch")
    if not _loader.module_files():
        pytest.skip("acb is not installed with its torch extension (pip install --no-build-isolation --no-deps .)")
    # On a GPU machine the demo's jobs and broker use the GPU: the test means it.
    result = run_cli(["demo", *SMALL, "--json"],
                     package_env(broker_bin, {"ACB_TOKEN_DIR": str(tmp_path)}, probe_gpu=True), timeout_s=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["kind"] == "torch"
    assert [j["priority"] for j in summary["jobs"]] == ["inference", "training", "training"]
    check_turns(summary, gpu_s=2 * 0.1)
    # The jobs waited for each other (acb's gate blocked their operators) and gave the device back when asked.
    assert sum(j["waited_s"] for j in summary["jobs"]) > 0
    assert sum(j["revokes"] for j in summary["jobs"]) > 0
    # How much sharing gains is a figure (benchmarks/run torch: sharing_speedup_vs_sequential), not a
    # timed assertion: with these small phases the makespan sits near the sequential bound.
    assert summary["makespan_s"] > 0 and summary["sequential_s"] == pytest.approx(3 * 2 * 0.2)


def test_demo_prints_a_readable_account(broker_bin, tmp_path):
    result = run_cli(["demo", *SMALL, "--simulated"], package_env(broker_bin, {"ACB_TOKEN_DIR": str(tmp_path)}),
                     timeout_s=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "private broker on 127.0.0.1:" in out
    assert "who held the device when" in out
    for name in ("inference", "train-1", "train-2"):
        assert f"dev0 {name} #" in out
    assert "makespan" in out and "one job after another" in out


def test_demo_rejects_nonsense_arguments(broker_bin):
    result = run_cli(["demo", "--jobs", "0"], package_env(broker_bin))
    assert result.returncode == 1
    assert result.stderr.startswith("acb: --jobs") and "Traceback" not in result.stderr
