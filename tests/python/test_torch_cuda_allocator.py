"""The allocator acb gives torch's CUDAPluggableAllocator: its alloc_fn raises torch's
out-of-memory error instead of returning NULL (after asking the broker for room), a torch
that would not forward record_stream is refused before anything changes, and on a GPU
record_stream and empty_cache reach the arena. Each case runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402

torch = pytest.importorskip("torch")


def _python(code: str, env: dict, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout_s)


# torch calls acb._C's alloc_fn as _cuda_malloc does (same function, null stream).
OOM_CODE = """
import torch
from acb import _loader
c = _loader.load()
{setup}
p = c._cuda_malloc(1 << 20, 0)
assert p != 0
c._cuda_free(p, 0)
assert c._cuda_malloc(0, 0) == 0
try:
    c._cuda_malloc(1 << 30, 0)
    print("RETURNED")
except torch.cuda.OutOfMemoryError as e:
    print("OOM", e)
"""


def test_alloc_fn_raises_out_of_memory_with_the_sizes():
    root = h.require_package()
    env = {**h.base_env(root), "ACB_EMULATED_DEVICE": h.device_spec("64MiB")}
    r = _python(OOM_CODE.format(setup=""), env)
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip()
    assert out.startswith("OOM "), out
    for part in ("tried to allocate 1073741824 bytes", "free 67108864 of 67108864 bytes",
                 "tried: releasing this arena's cached free segments", "no broker to ask for room"):
        assert part in out, (part, out)


def test_alloc_fn_asks_the_broker_for_room_before_raising(broker_factory):
    root = h.require_package()
    device = h.device_spec("64MiB")
    broker = broker_factory("--device", device)
    setup = "import acb\nacb.enable()\nx = torch.ones(1000) * 2  # holds the lease"
    r = _python(OOM_CODE.format(setup=setup), h.acb_env(root, broker, device))
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip()
    assert out.startswith("OOM "), out
    assert "the broker" in out and "no broker to ask" not in out, out


def test_a_torch_without_the_record_stream_setter_is_refused_before_anything_changes():
    root = h.require_package()
    code = """
import types, torch, acb
from acb import _api
changes = []
memory = types.SimpleNamespace(change_current_allocator=changes.append, _CUDAAllocator=lambda a: a)
fake = types.SimpleNamespace(__version__=torch.__version__, cuda=types.SimpleNamespace(memory=memory),
                             _C=types.SimpleNamespace(_cuda_customAllocator=lambda a, f: changes.append('create')))
try:
    _api._install_cuda_allocator(fake)
    print("INSTALLED")
except acb.AcbError as e:
    print("REFUSED", e)
print("CHANGES", changes)
"""
    if torch.version.cuda is not None:
        pytest.skip("this torch has CUDA: its pluggable allocator takes record_stream (the refusal is "
                    "tested with a CPU torch here and in tests/cpp/torch_core/test_pluggable_hooks.cpp)")
    r = _python(code, h.base_env(root))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("REFUSED acb: cannot manage CUDA memory"), lines
    assert "record_stream" in lines[0] and "libtorch_cuda.so" in lines[0], lines
    assert lines[-1] == "CHANGES []", lines


@pytest.mark.gpu
def test_record_stream_empty_cache_and_out_of_memory_on_a_gpu(broker_factory):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU and a CUDA build of torch")
    root = h.require_package()
    broker = broker_factory()
    code = """
import torch, acb
acb.enable()
n = 64 << 20
x = torch.ones(n, dtype=torch.uint8, device="cuda")
ptr = x.data_ptr()
side = torch.cuda.Stream()
side.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(side):
    torch.cuda._sleep(2_000_000_000)   # the side stream is busy for a while ...
    total = x.sum()                    # ... and then reads x
x.record_stream(side)
del x
y = torch.empty(n, dtype=torch.uint8, device="cuda")
print("REUSED_WHILE_SIDE_BUSY", y.data_ptr() == ptr)
side.synchronize()
print("SUM", int(total))
del y, total
torch.cuda.synchronize()
before = torch.cuda.mem_get_info()[0]
torch.cuda.empty_cache()
print("EMPTY_CACHE_FREED", torch.cuda.mem_get_info()[0] - before >= 2 * n)
try:
    torch.empty(1 << 50, dtype=torch.uint8, device="cuda")
    print("ALLOCATED")
except torch.cuda.OutOfMemoryError as e:
    print("OOM", "tried to allocate" in str(e))
"""
    env = {**h.base_env(root), "ACB_TOKEN_DIR": str(broker.token_dir), "ACB_BROKER": f"{broker.host}:{broker.port}"}
    r = _python(code, env, timeout_s=120.0)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines == ["REUSED_WHILE_SIDE_BUSY False", f"SUM {64 << 20}", "EMPTY_CACHE_FREED True", "OOM True"], \
        (lines, r.stderr)
