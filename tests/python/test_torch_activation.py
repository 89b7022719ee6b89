"""How acb gets switched on: the .pth auto-activation, `import acb` staying
light, the error for enable() after CUDA init, and the loader's version check.
Each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402

torch = pytest.importorskip("torch")


def _python(code: str, env: dict, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout_s)


def _pth_installed() -> bool:
    dirs = site.getsitepackages() + [site.getusersitepackages()]
    return any((Path(d) / "acb-autoactivate.pth").is_file() for d in dirs)


def test_import_acb_is_light_and_starts_nothing():
    root = h.require_package()
    r = _python("import sys, acb; print(json.dumps(sorted(m for m in ('torch', 'acb._C', 'acb._api') "
                "if m in sys.modules)))".replace("json.dumps", "__import__('json').dumps"), h.base_env(root))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [], r.stdout


def test_pth_autoactivates_when_torch_is_imported(broker_factory):
    root = h.require_package()
    if not _pth_installed():
        pytest.skip("acb-autoactivate.pth is not installed in site-packages (pip install the package)")
    device = h.device_spec("64MiB")
    broker = broker_factory("--device", device)
    env = h.acb_env(root, broker, device, ACB_ENABLE="1")
    code = ("import torch, acb, json; x = torch.ones(1000) * 2; s = acb.status(); "
            "print(json.dumps({'enabled': s.enabled, 'switches': s.switches, 'sum': float(x.sum())}))")
    r = _python(code, env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"enabled": True, "switches": 1, "sum": 2000.0}, (out, r.stderr)


def test_program_without_torch_is_unaffected():
    root = h.require_package()
    # Without the variables: acb is not even imported.
    r = _python("import sys; print('acb' in sys.modules, 'torch' in sys.modules)", h.base_env(root))
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "False False", "")
    # With ACB_ENABLE=1 but no torch import: torch is not loaded, no broker is
    # contacted (the address below has nobody listening), nothing is printed.
    env = {**h.base_env(root), "ACB_ENABLE": "1", "ACB_BROKER": "127.0.0.1:9"}
    r = _python("import sys; print('torch' in sys.modules, 'acb._api' in sys.modules)", env)
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "False False", "")


def test_enable_after_cuda_init_raises_what_to_do():
    root = h.require_package()
    code = ("import torch, acb\n"
            "torch.cuda.is_initialized = lambda: True  # as if a CUDA tensor had been made\n"
            "try:\n    acb.enable()\nexcept acb.AcbError as e:\n    print('ERROR', e)\n"
            "print('enabled', acb.is_enabled())\n")
    # Nothing may be contacted or started: the check comes first.
    r = _python(code, {**h.base_env(root), "ACB_EMULATED_DEVICE": "unused:64MiB", "ACB_ENABLE": "0"})
    assert r.returncode == 0, r.stderr
    assert "ERROR acb.enable() was called after CUDA was initialised" in r.stdout
    assert "ACB_ENABLE=1" in r.stdout and "before any CUDA work" in r.stdout
    assert "enabled False" in r.stdout


@pytest.mark.gpu
def test_enable_after_real_cuda_init_raises():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU and a CUDA build of torch")
    root = h.require_package()
    code = ("import torch, acb\ntorch.zeros(1, device='cuda')\n"
            "try:\n    acb.enable()\nexcept acb.AcbError as e:\n    print('ERROR', e)\n")
    r = _python(code, h.base_env(root))
    assert r.returncode == 0, r.stderr
    assert "ERROR acb.enable() was called after CUDA was initialised" in r.stdout


def test_loader_names_both_torch_versions_on_mismatch():
    root = h.require_package()
    from acb import _loader

    built = _loader.built_against(next((root / "acb").glob("_C*.so")))
    assert built == torch.__version__
    code = ("import torch; torch.__version__ = '0.0.1'\nfrom acb import _loader\n"
            "try:\n    _loader.load()\nexcept ImportError as e:\n    print(e)\n")
    r = _python(code, h.base_env(root))
    assert r.returncode == 0, r.stderr
    assert f"built against torch {torch.__version__}, but torch 0.0.1 is installed" in r.stdout


def test_bad_priority_is_a_clear_error():
    root = h.require_package()
    code = ("import acb\ntry:\n    acb.enable(priority='urgent')\nexcept ValueError as e:\n    print(e)\n")
    r = _python(code, {**h.base_env(root), "ACB_EMULATED_DEVICE": "unused:64MiB"})
    assert r.returncode == 0, r.stderr
    assert "unknown priority 'urgent'; use one of inference, training, batch" in r.stdout


def test_status_region_and_set_priority(broker_factory):
    root = h.require_package()
    device = h.device_spec("64MiB")
    broker = broker_factory("--device", device)
    env = h.acb_env(root, broker, device, ACB_ENABLE="0")
    code = ("import json, torch, acb\n"
            "before = acb.status()\n"
            "acb.enable(priority='batch')\n"
            "with acb.region():\n    held = acb.status().lease_state\n    x = torch.ones(1 << 16)\n"
            "acb.set_priority('inference')\n"
            "from acb import _C\n"
            "me = [c for c in json.loads(_C.broker_status())['clients'] if c['client_id'] == acb.status().client_id]\n"
            "acb.disable()\n"
            "print(json.dumps({'before': before.enabled, 'held': held, 'priority': me[0]['priority'],\n"
            "                  'after': acb.status().enabled, 'sum': float(x.sum())}))\n")
    r = _python(code, env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"before": False, "held": "holding", "priority": "inference", "after": False,
                   "sum": float(1 << 16)}, (out, r.stderr)
