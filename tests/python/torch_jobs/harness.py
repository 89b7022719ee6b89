"""Helpers for the torch end-to-end tests: find the installed acb, build job
environments and command lines, start jobs and wait for them (bounded).

The tests need acb installed with its extension (pip install
--no-build-isolation --no-deps .); ACB_TEST_PACKAGE_DIR may name another
directory that holds a built acb package (it is put on PYTHONPATH, and the
auto-activation .pth found there is processed with site.addsitedir).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

JOBS = Path(__file__).resolve().parent
RUN_MAIN = "import sys; from acb._run import main; sys.exit(main())"


def package_root() -> Optional[Path]:
    """The directory that holds an acb package with its compiled extension, or None."""
    env = os.environ.get("ACB_TEST_PACKAGE_DIR")
    candidates = [Path(env)] if env else []
    spec = importlib.util.find_spec("acb")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).resolve().parent.parent)
    for root in candidates:
        if list((root / "acb").glob("_C*.so")) and (root / "acb" / "lib" / "libacb_alloc.so").is_file():
            return root
    return None


def require_package() -> Path:
    root = package_root()
    if root is None:
        pytest.skip("acb is not installed with its torch extension "
                    "(run: pip install --no-build-isolation --no-deps . from the repository root)")
    return root


def base_env(root: Path) -> Dict[str, str]:
    """The environment without any ACB_* variable, able to import this acb."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACB_")}
    if os.environ.get("ACB_TEST_PACKAGE_DIR"):
        env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # deterministic cuBLAS for the gpu-marked runs
    return env


def device_spec(capacity: str) -> str:
    """A fresh emulated device name (its capacity ledger is per name) with a capacity."""
    return f"acbt{uuid.uuid4().hex[:10]}:{capacity}"


def acb_env(root: Path, broker, device: str, **extra: str) -> Dict[str, str]:
    env = base_env(root)
    env.update({"ACB_TOKEN_DIR": str(broker.token_dir), "ACB_BROKER": f"{broker.host}:{broker.port}",
                "ACB_EMULATED_DEVICE": device})
    env.update(extra)
    return env


def acb_run(priority: str, argv: Sequence[str]) -> List[str]:
    """`acb run --priority P -- python ARGV...` (through acb._run, which cli.py dispatches to)."""
    return [sys.executable, "-c", RUN_MAIN, "--priority", priority, "--", sys.executable, *argv]


def job(name: str, *args: str) -> List[str]:
    return [str(JOBS / name), *args]


def start(cmd: Sequence[str], env: Dict[str, str], log: Path) -> subprocess.Popen:
    out = open(log, "wb")
    try:
        return subprocess.Popen(list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()


def finish(proc: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> None:
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"job {proc.args} did not finish within {timeout_s} s; output:\n"
                             f"{log.read_text(errors='replace')[-4000:]}") from None
    assert rc == 0, f"job {proc.args} exited {rc}; output:\n{log.read_text(errors='replace')[-4000:]}"


def run_alone(root: Path, argv: Sequence[str], log: Path, timeout_s: float = 120.0) -> None:
    """Runs a job without acb (the reference result)."""
    finish(start([sys.executable, *argv], base_env(root), log), log, timeout_s)


def release_barrier(directory: Path, count: int, procs, timeout_s: float = 180.0) -> None:
    """Once `count` jobs wrote their .ready file in directory, lets them all go (bounded wait)."""
    import time

    deadline = time.monotonic() + timeout_s
    while len(list(directory.glob("*.ready"))) < count:
        for proc, log in procs:
            assert proc.poll() is None, f"job {proc.args} exited {proc.returncode} before the barrier:\n" \
                                        f"{log.read_text(errors='replace')[-4000:]}"
        assert time.monotonic() < deadline, f"only {len(list(directory.glob('*.ready')))} of {count} jobs ready"
        time.sleep(0.02)  # polling files the jobs write
    (directory / "go").touch()


def load_status(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def assert_same_tensors(expected, actual, what: str) -> None:
    import torch

    if isinstance(expected, dict):
        assert expected.keys() == actual.keys(), f"{what}: keys differ"
        for key in expected:
            assert_same_tensors(expected[key], actual[key], f"{what}[{key}]")
        return
    assert isinstance(expected, torch.Tensor), f"{what}: unexpected {type(expected)}"
    assert expected.dtype == actual.dtype and expected.shape == actual.shape, f"{what}: dtype/shape differ"
    assert torch.equal(expected, actual), f"{what}: values differ (not bit-identical)"

