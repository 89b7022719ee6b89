"""CUDA graphs and Triton under acb. Without a GPU: the capture refusal and
Inductor's CUDA graphs turned off (acb._graphs), checked on torch's own
classes; the Triton launch path is in test_torch_driven.py. With a GPU (marked
gpu): compiled mode="reduce-overhead" code and a direct Triton kernel in two
jobs forced to switch on one GPU, bit-identical to running alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402

torch = pytest.importorskip("torch")

POLICY_CHECK = r"""
import json, sys, torch
from acb import AcbError, _graphs
_graphs.install(torch)
_graphs.install(torch)  # idempotent
configs = [torch._TorchCompileInductorWrapper(mode, None, False).config
           for mode in ("reduce-overhead", "max-autotune", "default", "max-autotune-no-cudagraphs")]
configs.append(torch._TorchCompileInductorWrapper(None, {"triton.cudagraphs": True}, False).config)
try:
    torch.cuda.graphs.CUDAGraph.capture_begin(object())
    refused = ""
except AcbError as e:
    refused = str(e)
print(json.dumps({"cudagraphs": [c.get("triton.cudagraphs") for c in configs], "refused": refused}))
"""


def test_capture_is_refused_and_compiled_cuda_graphs_are_turned_off():
    root = h.require_package()
    r = subprocess.run([sys.executable, "-c", POLICY_CHECK], env=h.base_env(root), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # reduce-overhead, max-autotune and an explicit option lose their CUDA graphs; the others never had them.
    assert out["cudagraphs"] == [False, False, None, None, False], out
    assert "CUDA graph capture is not supported while acb manages" in out["refused"], out
    assert "ACB_ENABLE=0" in out["refused"], out
    assert r.stderr.count("CUDA graphs of torch.compile") == 1, r.stderr  # said once


def _gpu_or_skip() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU and a CUDA build of torch")
    pytest.importorskip("triton")


@pytest.mark.gpu
def test_cuda_graph_capture_under_acb_raises_a_clear_error(broker_factory):
    _gpu_or_skip()
    root = h.require_package()
    broker = broker_factory("--device", f"gpu0:{torch.cuda.get_device_properties(0).total_memory}")
    env = h.base_env(root)
    env.update({"ACB_TOKEN_DIR": str(broker.token_dir), "ACB_BROKER": f"{broker.host}:{broker.port}"})
    code = ("import torch, acb\nacb.enable()\nx = torch.ones(4, device='cuda')\ng = torch.cuda.CUDAGraph()\n"
            "try:\n    with torch.cuda.graph(g):\n        x.add_(1)\nexcept acb.AcbError as e:\n"
            "    print('REFUSED', e)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "REFUSED acb: CUDA graph capture is not supported" in r.stdout, r.stdout


@pytest.mark.gpu
def test_reduce_overhead_and_triton_jobs_share_a_gpu_bit_identically(broker_factory, tmp_path):
    _gpu_or_skip()
    root = h.require_package()
    steps, mib = "20", "256"
    job = h.job("gpu_kernels_job.py")
    alone = tmp_path / "alone.pt"
    subprocess.run([sys.executable, *job, str(alone), steps, mib], env=h.base_env(root), check=True, timeout=600)
    # Room for one job's working set and a half: every switch evicts the other job.
    broker = broker_factory("--device", f"gpu0:{(int(mib) * 3 // 2) << 20}", "--quantum-ms", "20")
    env = h.base_env(root)
    env.update({"ACB_TOKEN_DIR": str(broker.token_dir), "ACB_BROKER": f"{broker.host}:{broker.port}",
                "ACB_ENABLE": "1"})
    outs = [tmp_path / f"acb{i}.pt" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, *job, str(o), steps, mib], env=env) for o in outs]
    for p in procs:
        assert p.wait(timeout=600) == 0
    expected = torch.load(alone)
    for o in outs:
        h.assert_same_tensors(expected, torch.load(o), o.name)
        s = json.loads(Path(str(o) + ".status.json").read_text())
        assert s["offloads"] >= 1 and s["restored_bytes"] > 0, s
