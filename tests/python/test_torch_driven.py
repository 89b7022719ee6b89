"""Dirty tracking and revoke deadlines, with jobs driven step by step:
memory an inference model does not write is copied to the host once and
skipped as clean later; a holder with no idle gap yields at the next op
boundary once a revoke's deadline has passed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402
from conftest import read_line  # noqa: E402
from driven import Driven, driven_env  # noqa: E402

pytest.importorskip("torch")

#: Triton's launch entry point without a GPU (tests/python/fake_triton/triton/__init__.py)
FAKE_TRITON = Path(__file__).resolve().parent / "fake_triton"


def test_clean_weights_are_copied_once(broker_factory):
    env = driven_env(broker_factory, "32MiB", "--quantum-ms", "20")
    server = Driven(env, "training")
    hog = None
    try:
        first = server.do("infer")["result"]
        hog = Driven(env, "training")
        hog.do("grow 24")            # does not fit beside the server: it is evicted (weights copied)
        after_first = server.do("infer")   # restored at the same addresses; weights only read
        assert after_first["result"] == first
        hog.do("touch")              # evicts the server again
        s = server.do("infer")["status"]
        print(json.dumps(s))
        assert s["offloads"] >= 2, s
        assert s["offload_copied_bytes"] > 0, s
        assert s["skipped_clean_bytes"] > 0, s  # the second offload skipped clean (weight) memory
        assert s["restored_bytes"] > 0, s
    finally:
        server.close()
        if hog is not None:
            hog.close()


def test_raw_write_inside_region_survives_offload_and_restore(broker_factory):
    """acb.region() marks what its body may have written: a write through a
    numpy view (no operator) into a segment whose backup was current is copied
    out by the next offload instead of being skipped as clean."""
    env = driven_env(broker_factory, "32MiB", "--quantum-ms", "20")
    job = Driven(env, "training")
    hog = None
    try:
        job.do("grow 8")
        hog = Driven(env, "training")
        hog.do("grow 24")                       # evicts the job: its 8 MiB are copied out
        assert job.do("keptsum")["result"] == float(8 << 18)  # restored: the backup is current
        job.do("rawfill 3")                     # raw write inside acb.region()
        hog.do("touch")                         # evicts the job again
        reply = job.do("keptsum")               # restored from the second offload's backup
        s = reply["status"]
        assert s["offloads"] >= 2 and s["restored_bytes"] > 0, s
        assert reply["result"] == 3.0 * (8 << 18), reply
    finally:
        job.close()
        if hog is not None:
            hog.close()


@pytest.mark.parametrize("write, value", [("touch", 2.0), ("raise 5", 5.0)], ids=["add_unboxed", "clamp_min_boxed"])
def test_subclass_inner_write_survives_offload_and_restore(broker_factory, write, value):
    """An in-place op on a wrapper tensor subclass writes its inner tensor
    inside __torch_dispatch__, below the op hook's call on the wrapper (which
    has no storage): the inner write is marked, so the next offload copies
    the segment whose backup was current instead of skipping it as clean.
    add_ has an unboxed hook kernel, clamp_min_ goes through the fallback."""
    env = driven_env(broker_factory, "32MiB", "--quantum-ms", "20")
    job = Driven(env, "training")
    hog = None
    try:
        job.do("subgrow 8")
        hog = Driven(env, "training")
        hog.do("grow 24")                       # evicts the job: its 8 MiB are copied out
        assert job.do("keptsum")["result"] == float(8 << 18)  # restored: the backup is current
        job.do(write)                           # the subclass's inner tensor is written
        hog.do("touch")                         # evicts the job again
        reply = job.do("keptsum")               # restored from the second offload's backup
        s = reply["status"]
        assert s["offloads"] >= 2 and s["restored_bytes"] > 0, s
        assert reply["result"] == value * (8 << 18), reply
    finally:
        job.close()
        if hog is not None:
            hog.close()


def test_revoke_past_its_deadline_is_honoured_at_the_next_op_boundary(broker_factory, tmp_path):
    """A holder that never pauses (no idle gap) still yields once the revoke's
    deadline has passed: the inference request is served while it is busy."""
    env = driven_env(broker_factory, "64MiB", "--preempt-deadline-ms", "200", "--aging-ms", "300")
    busy = Driven(env, "training")
    server = None
    try:
        server = Driven(env, "inference")
        stop = tmp_path / "stop-busy"
        busy.proc.stdin.write(f"busy {stop}\n".encode())  # ops back to back until `stop` exists
        busy.proc.stdin.flush()
        busy.reply("busy-started")
        s = server.do("infer")["status"]
        # Served while the trainer is still busy (it stops only when told): its reply has not come.
        assert busy.proc.poll() is None and read_line(busy.proc.stdout, 0.01) is None
        assert s["wait_max_ms"] < 3000, s
        stop.touch()
        b = busy.reply("busy")["status"]
        assert b["revokes"] >= 1 and b["releases"] >= 1, b
    finally:
        busy.close()
        if server is not None:
            server.close()


def test_running_statistics_written_by_batch_norm_survive_offload(broker_factory):
    """batch_norm updates running_mean/var in place without declaring it in its
    schema; an offload that trusted the schema would skip their segments as
    clean and a restore would bring back stale statistics."""
    env = driven_env(broker_factory, "48MiB", "--quantum-ms", "20")
    server = Driven(env, "training")
    hog = None
    try:
        server.do("bn")
        hog = Driven(env, "training")
        hog.do("grow 40")                        # evicts the server: first backup of everything
        second = server.do("bn")["result"]       # restored; running stats updated again
        hog.do("touch")                          # evicts the server again
        s = server.do("bnstats")
        assert s["status"]["offloads"] >= 2, s["status"]
        assert s["status"]["restored_bytes"] > 0, s["status"]
        assert s["result"] == second             # not the statistics of the first backup
    finally:
        server.close()
        if hog is not None:
            hog.close()


def test_unboxed_and_boxed_hook_paths_both_gate_and_mark_writes(broker_factory):
    """add_ runs through an unboxed hook kernel, clamp_min_ through the boxed
    fallback: each path must restore the tensor before writing it and mark
    the write, or the next offload skips the segment as clean and the restore
    after it brings back the value of the older backup."""
    torch = pytest.importorskip("torch")
    h.require_package()
    from acb import _loader
    unboxed = set(_loader.load()._unboxed_hook_operators())
    assert {"add_.Tensor", "add_.Scalar"} <= unboxed and "clamp_min_" not in unboxed
    for name in unboxed:  # every listed kernel is registered on the hook's key
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::{name}", "TESTING_ONLY_GenericMode"), name
    assert not torch._C._dispatch_has_kernel_for_dispatch_key("aten::clamp_min_", "TESTING_ONLY_GenericMode")

    env = driven_env(broker_factory, "32MiB", "--quantum-ms", "20")
    job = Driven(env, "training")
    hog = None
    try:
        job.do("grow 8")                    # 2M floats of 1.0
        elements = 8 << 18
        hog = Driven(env, "training")
        hog.do("grow 24")                   # evicts the job: its tensor is copied out (1.0)
        job.do("touch")                     # restored, then written through the unboxed kernel (2.0)
        hog.do("touch")                     # evicts the job again: the write must be copied
        assert job.do("keptsum")["result"] == 2.0 * elements
        job.do("raise 5")                   # restored, then written through the boxed fallback (5.0)
        hog.do("touch")                     # evicts the job again
        s = job.do("keptsum")
        assert s["result"] == 5.0 * elements
        assert s["status"]["offloads"] >= 3 and s["status"]["restored_bytes"] > 0, s["status"]
    finally:
        job.close()
        if hog is not None:
            hog.close()


def test_triton_launch_holds_the_device_and_marks_its_arguments(broker_factory):
    """A Triton launch (kernel[grid](...)) writes through raw pointers: acb
    holds the device for it (restoring an offloaded job first) and marks its
    tensor arguments written, so the write survives the next offload."""
    env = driven_env(broker_factory, "32MiB", "--quantum-ms", "20")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAKE_TRITON), env.get("PYTHONPATH", "")]))
    job = Driven(env, "training")
    hog = None
    try:
        job.do("grow 8")
        hog = Driven(env, "training")
        hog.do("grow 24")                       # evicts the job: its 8 MiB are copied out
        s = job.do("tritonfill 5")["status"]    # launched while offloaded: restored first
        assert s["restored_bytes"] > 0, s
        hog.do("touch")                         # evicts the job again: the launch's write is copied out
        reply = job.do("keptsum")
        assert reply["status"]["offloads"] >= 2, reply
        assert reply["result"] == 5.0 * (8 << 18), reply
    finally:
        job.close()
        if hog is not None:
            hog.close()
