"""The gate / lease / offload protocol model (tests/model/lease_protocol.pml),
checked exhaustively with spin: the protocol as implemented has no
reachable state in which an op runs on memory being copied out or unmapped,
the arena allocates without the lease, or an offload's backup misses a
write; each ordering before its fix (RACY_EVICT, RACY_ALLOC) has one, and
spin must find it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parents[1] / "model" / "lease_protocol.pml"
TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(shutil.which("spin") is None or shutil.which("cc") is None,
                                reason="spin and a C compiler are needed (apt-get install spin; "
                                       "scripts/bootstrap installs it)")


def _verify(tmp_path: Path, *defines: str) -> str:
    """spin -a, cc pan.c, ./pan: the verifier's report (exhaustive safety search)."""
    work = tmp_path / ("_".join(d.lstrip("-D").lower() for d in defines) or "plain")
    work.mkdir()
    shutil.copy(MODEL, work / MODEL.name)
    subprocess.run(["spin", *defines, "-a", MODEL.name], cwd=work, check=True, capture_output=True,
                   timeout=TIMEOUT_S)
    subprocess.run(["cc", "-O2", "-DSAFETY", "-o", "pan", "pan.c"], cwd=work, check=True, capture_output=True,
                   timeout=TIMEOUT_S)
    run = subprocess.run(["./pan", "-m100000"], cwd=work, capture_output=True, text=True, timeout=TIMEOUT_S)
    report = run.stdout + run.stderr
    assert "max search depth too small" not in report, report
    return report


@pytest.mark.parametrize("defines", [(), ("-DALLOC",)], ids=["ops", "ops-and-allocations"])
def test_protocol_keeps_memory_safe(tmp_path, defines):
    report = _verify(tmp_path, *defines)
    assert "errors: 0" in report, report
    assert "Search not completed" not in report, report  # every reachable state was visited


@pytest.mark.parametrize("define, violated", [
    ("-DRACY_EVICT", "assertion violated (mapped&& !(copying))"),  # an op on unmapped memory
    ("-DRACY_ALLOC", "assertion violated (((gstate==2)||(gstate==3))&&mapped)"),  # malloc without the lease
], ids=["evict-after-grant", "malloc-after-exit"])
def test_protocol_before_the_fix_is_caught(tmp_path, define, violated):
    report = _verify(tmp_path, define)
    assert "errors: 1" in report, report
    assert violated in report, report
