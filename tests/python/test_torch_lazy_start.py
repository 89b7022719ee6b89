"""acb.enable() touches neither the device nor the broker; the first device
operation does (docs/torch.md, "Lazy start"). So a process that inherits
ACB_ENABLE=1 (or ACB_BROKER) but never computes on the device, such as a tool
that imports torch, is no broker client and opens no driver, while one that
computes joins at its first operation; Inductor's compile workers are never
enabled. Runs on the emulated device, where every operator of an attached
thread is a device operation."""

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
from test_torch_activation import _pth_installed  # noqa: E402

torch = pytest.importorskip("torch")

# Reports, then waits for a line on stdin before each step, so that the test
# looks at the broker while the process is alive in each state.
CHILD = """
import json, sys
import torch, acb
from acb import _C

def report(step):
    print(json.dumps({"step": step, "enabled": acb.is_enabled(), "activated": _C.activated(),
                      "device_opened": _C._device_opened(), "client_id": acb.status().client_id}), flush=True)
    sys.stdin.readline()

torch.get_num_threads()  # torch imported and used, no tensor operator
report("imported")
x = torch.ones(1000) * 3  # the first device operation (emulation: every operator)
report("computed")
print(json.dumps({"sum": float(x.sum())}), flush=True)
"""


def _clients_named(broker, name: str) -> list:
    with broker.connect(name="probe") as probe:
        return [c for c in probe.request({"op": "status"})["clients"] if c["name"] == name]


def _next(proc: subprocess.Popen, stderr: Path) -> dict:
    line = read_line(proc.stdout, 60.0)
    assert line is not None, f"no report from the child; stderr:\n{stderr.read_text()[-3000:]}"
    return json.loads(line)


def _run_child(tmp_path: Path, env: dict, broker) -> None:
    stderr_path = tmp_path / "child.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr)
    try:
        imported = _next(proc, stderr_path)
        assert imported == {"step": "imported", "enabled": True, "activated": False, "device_opened": False,
                            "client_id": 0}, imported
        assert _clients_named(broker, "child") == []  # enabled, but not a broker client
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        computed = _next(proc, stderr_path)
        assert computed["activated"] and computed["device_opened"] and computed["client_id"] > 0, computed
        clients = _clients_named(broker, "child")
        assert [c["client_id"] for c in clients] == [computed["client_id"]], clients
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        assert _next(proc, stderr_path) == {"sum": 3000.0}
        assert proc.wait(timeout=60) == 0, stderr_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_explicit_enable_joins_at_the_first_device_operation(broker_factory, tmp_path):
    root = h.require_package()
    device = h.device_spec("64MiB")
    broker = broker_factory("--device", device)
    env = h.acb_env(root, broker, device, ACB_ENABLE="0", ACB_NAME="child")
    child = CHILD.replace("import torch, acb\n", "import torch, acb\nacb.enable()\n", 1)
    stderr_path = tmp_path / "explicit.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", child], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr)
    try:
        imported = _next(proc, stderr_path)
        assert (imported["enabled"], imported["activated"], imported["device_opened"]) == (True, False, False)
        assert _clients_named(broker, "child") == []
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        computed = _next(proc, stderr_path)
        assert (computed["activated"], computed["device_opened"]) == (True, True), computed
        assert len(_clients_named(broker, "child")) == 1
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        assert _next(proc, stderr_path) == {"sum": 3000.0}
        assert proc.wait(timeout=60) == 0, stderr_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_inherited_acb_enable_connects_only_a_child_that_computes(broker_factory, tmp_path):
    root = h.require_package()
    if not _pth_installed():
        pytest.skip("acb-autoactivate.pth is not installed in site-packages (pip install the package)")
    device = h.device_spec("64MiB")
    broker = broker_factory("--device", device)
    _run_child(tmp_path, h.acb_env(root, broker, device, ACB_ENABLE="1", ACB_NAME="child"), broker)


def test_a_compile_worker_is_never_enabled(broker_factory, tmp_path):
    root = h.require_package()
    if not _pth_installed():
        pytest.skip("acb-autoactivate.pth is not installed in site-packages (pip install the package)")
    device = h.device_spec("64MiB")
    broker = broker_factory("--device", device)
    # What Inductor runs: python .../torch/_inductor/compile_worker/__main__.py (a copy's path: only the path counts).
    worker = tmp_path / "torch" / "_inductor" / "compile_worker" / "__main__.py"
    worker.parent.mkdir(parents=True)
    worker.write_text("import json, torch, acb\nx = torch.ones(10) * 2\n"
                      "print(json.dumps({'enabled': acb.is_enabled(), 'sum': float(x.sum())}))\n")
    env = h.acb_env(root, broker, device, ACB_ENABLE="1", ACB_NAME="worker")
    r = subprocess.run([sys.executable, str(worker)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"enabled": False, "sum": 20.0}
    assert "acb:" not in r.stderr, r.stderr


@pytest.mark.parametrize("argv, expected", [
    ([os.path.join("/usr", "lib", "python3", "torch", "_inductor", "compile_worker", "__main__.py"), "--kind=fork"],
     True),
    (["torch/_inductor/compile_worker/__main__.py"], True),
    (["train.py"], False),
    (["-c"], False),
    ([], False),
    ([os.path.join("/x", "_inductor", "compile_worker", "__main__.py")], False),  # not torch's
])
def test_is_compile_worker(argv, expected):
    from acb import _autoactivate

    assert _autoactivate.is_compile_worker(argv) is expected


def test_no_cuda_probe_initialises_cuda():
    from acb import _cuda_probe

    # A CPU build of torch has no CUDA: 0 devices, and nothing was initialised to learn it.
    if torch.cuda._is_compiled():
        pytest.skip("a CUDA build of torch: covered by the gpu-marked runs")
    assert _cuda_probe.visible_cuda_devices(torch) == 0
    assert not torch.cuda.is_initialized()
