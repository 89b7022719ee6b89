"""Operators issued from a second Python thread are gated too: while another
process holds the device, an op from a threading.Thread blocks until the
device comes back; a thread that already ran before acb.enable() is attached
too, and its in-place writes survive offloads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402
from conftest import read_line  # noqa: E402
from driven import Driven, driven_env  # noqa: E402

pytest.importorskip("torch")


def _event(proc: subprocess.Popen, name: str, timeout_s: float = 60.0) -> dict:
    line = read_line(proc.stdout, timeout_s)
    if line is None:
        proc.kill()
        raise AssertionError(f"{proc.args} did not report {name!r}: {proc.stderr.read().decode()}")
    event = json.loads(line)
    assert event["event"] == name, event
    return event


def test_op_from_second_thread_waits_for_the_device(broker_factory, tmp_path):
    root = h.require_package()
    device = h.device_spec("64MiB")
    broker = broker_factory("--device", device)
    env = h.acb_env(root, broker, device, ACB_ENABLE="0")
    holder = subprocess.Popen([sys.executable, *h.job("hold_job.py")], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    user = None
    try:
        _event(holder, "holding")
        user = subprocess.Popen([sys.executable, *h.job("thread_job.py")], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        _event(user, "ready")
        # The op is issued right after "ready"; ungated it would be done long
        # before the holder below hears it may let go.
        holder.stdin.write(b"\n")
        holder.stdin.flush()
        released = _event(holder, "released")
        line = read_line(user.stdout, 60)
        assert line is not None, user.stderr.read().decode()
        out = json.loads(line)
        assert user.wait(timeout=30) == 0
    finally:
        for proc in (holder, user):
            if proc is not None:
                proc.kill()
                proc.wait()
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream:
                        stream.close()
    assert out["attached"] is True
    assert out["t_done"] >= released["t"], (out, released)
    assert out["sum"] == 3.0 * 2 * (1 << 16)
    assert out["status"]["waits"] >= 1 and out["status"]["switches"] >= 1


def test_thread_started_before_enable_is_gated_and_its_writes_kept(broker_factory):
    """A thread that was already running when acb.enable() was called writes
    kept tensors in place (add_: unboxed kernel; clamp_min_: boxed fallback)
    while its process is offloaded: each op waits for the device and its
    write is marked, so it survives the next offload. Unattached, the first
    op would touch offloaded (inaccessible) memory."""
    env = driven_env(broker_factory, "32MiB", "--quantum-ms", "20")
    job = Driven(env, "training", "prethread")
    hog = None
    try:
        job.do("grow 8")
        hog = Driven(env, "training")
        hog.do("grow 24")                 # evicts the job
        job.do("thread touch")            # from the pre-enable thread, while offloaded
        hog.do("touch")                   # evicts the job again: the write must be copied
        assert job.do("thread keptsum")["result"] == 2.0 * (8 << 18)
        job.do("thread raise 5")
        hog.do("touch")
        reply = job.do("thread keptsum")
        s = reply["status"]
        assert s["offloads"] >= 3 and s["restored_bytes"] > 0 and s["waits"] >= 3, s
        assert s["safe_mode_reason"] == "", s
        assert reply["result"] == 5.0 * (8 << 18), reply
    finally:
        job.close()
        if hog is not None:
            hog.close()
