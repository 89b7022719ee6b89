"""Auto-activation: runs acb.enable() as soon as the program has imported torch.

Installed by the acb-autoactivate.pth line only when ACB_ENABLE=1 (or
ACB_BROKER is set and ACB_ENABLE is not 0). A sys.meta_path finder waits
for the top-level ``torch`` import, lets the normal finders locate it, and
wraps that one spec's exec_module so that acb.enable() runs right after
torch's own module code finished (before the program can touch CUDA).

ACB_ENABLE=1 is inherited by every child process. enable() contacts nothing
(the first device operation joins the broker), so a child that never computes
on the device never becomes a client; torch.compile's compile workers are not
enabled at all: they compile, and must never hold or wait for a device.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType
from typing import Mapping, Optional, Sequence


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """The .pth file's rule: ACB_ENABLE=1, or ACB_BROKER set without ACB_ENABLE=0."""
    flag = environ.get("ACB_ENABLE", "")
    if flag:
        return flag.strip().lower() in ("1", "true", "yes", "on")
    return bool(environ.get("ACB_BROKER"))


def is_compile_worker(argv: Optional[Sequence[str]] = None) -> bool:
    """True in one of Inductor's compile worker processes (python .../torch/_inductor/compile_worker/__main__.py)."""
    argv = sys.argv if argv is None else argv
    if not argv or not argv[0]:
        return False
    parts = os.path.normpath(argv[0]).split(os.sep)
    return parts[-4:-1] == ["torch", "_inductor", "compile_worker"]


def _activate() -> None:
    if is_compile_worker():
        return
    try:
        import acb

        acb.enable()
    except Exception as e:  # the program still runs, unshared, and says why
        print(f"acb: auto-activation failed, this process runs without GPU sharing: {e}", file=sys.stderr)
        if os.environ.get("ACB_STRICT", "") == "1":
            raise


class _TorchImportHook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != "torch":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]  # fire once
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        inner_exec = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            inner_exec(module)
            _activate()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]  # this spec's own loader instance only
        return spec


def install() -> None:
    """Enables acb now if torch is already imported, else right after torch is imported
    (only when wanted(): the .pth line's quick check lets e.g. ACB_ENABLE=false through)."""
    if not wanted():
        return
    if "torch" in sys.modules:
        _activate()
        return
    if not any(isinstance(f, _TorchImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchImportHook())
