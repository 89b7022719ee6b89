"""scripts/gpu-check's mechanics on a machine without a GPU: its steps fail
cleanly, one at a time, and the summary says which failed and why (a
step's own reason, a gpu test that would have skipped, a step cut at its
time limit, steps past the time budget), without building anything again.

On a machine with a GPU the script runs for real instead (docs/operations.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check"


def _run(*args: str, timeout_s: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ACB_REQUIRE_GPU"}
    return subprocess.run([str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout_s)


def _summary(out: Path) -> dict:
    """Step name -> (status, the rest of its line)."""
    lines = {}
    for line in (out / "summary.txt").read_text().splitlines():
        if line.startswith("#"):
            continue
        name, status, rest = line.split(None, 2)
        lines[name] = (status, rest)
    return lines


@pytest.fixture
def no_gpu() -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA driver: scripts/gpu-check runs for real here")
    if shutil.which("timeout") is None:
        pytest.skip("needs coreutils' timeout")


def test_each_step_fails_cleanly_and_the_summary_says_why(no_gpu, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    result = _run("--out", str(out), "--steps", "sharing,preflight,pytest-gpu", "--limit", "sharing=2")
    assert result.returncode == 1, result.stdout + result.stderr
    steps = _summary(out)
    # In the script's order, whatever the order asked for.
    assert list(steps) == ["preflight", "pytest-gpu", "sharing"], steps
    status, why = steps["preflight"]
    assert status == "FAIL" and "nvidia-smi not found" in why, steps["preflight"]
    status, why = steps["pytest-gpu"]
    assert status == "FAIL" and "failed" in why, steps["pytest-gpu"]
    # The gpu tests ran and would have skipped: ACB_REQUIRE_GPU=1 made each a failure.
    assert "ACB_REQUIRE_GPU=1 but this gpu test was skipped" in (out / "pytest-gpu.log").read_text()
    status, why = steps["sharing"]
    assert status == "TIMEOUT" and "within its 2s limit" in why, steps["sharing"]
    for name in steps:
        assert (out / f"{name}.log").is_file(), name
    assert (out / "figures.txt").is_file()
    assert "gpu-check summary" in result.stdout


def test_steps_past_the_budget_or_after_a_failed_build_are_not_run_and_say_so(no_gpu, tmp_path):
    out = tmp_path / "out"
    result = _run("--out", str(out), "--steps", "build,cpp-gpu", "--budget-s", "4")
    assert result.returncode == 1, result.stdout + result.stderr
    steps = _summary(out)
    assert steps == {"build": ("NOT-RUN", "0s  the 4s budget was spent before it"),
                     "cpp-gpu": ("NOT-RUN", "0s  needs build, which did not pass")}, steps


def test_bad_arguments_name_the_steps(tmp_path):
    result = _run("--out", str(tmp_path), "--steps", "preflight,nosuch")
    assert result.returncode == 2
    assert "no step named 'nosuch'" in result.stderr and "bench-alloc" in result.stderr
    result = _run("--out", str(tmp_path), "--limit", "build")
    assert result.returncode == 2
    assert "STEP=SECONDS" in result.stderr
