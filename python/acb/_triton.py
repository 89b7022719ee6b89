"""Triton kernels launched by user code or libraries (``kernel[grid](...)``).

A Triton launch bypasses the dispatcher: the kernel runs on the raw pointers
of its tensor arguments. acb wraps ``triton.runtime.jit.JITFunction.run``, the
one Python entry point of such launches (autotuned kernels reach it too), so
that each launch holds the device like one operator (acquiring and restoring
first when the process does not hold it) and marks every tensor argument
written, since Triton does not say which pointers a kernel stores through.
Kernels that torch.compile generates are launched from compiled graphs,
which acb gates as a whole (acb._compile).
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any, Optional

from acb import _gating, _post_import

_ORIGINAL = "_acb_original_run"


def _wrap(jit_module: ModuleType) -> None:
    cls = getattr(jit_module, "JITFunction", None)
    if cls is None or hasattr(cls, _ORIGINAL):
        return
    original = cls.run

    @functools.wraps(original)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _gating.c_module is None or kwargs.get("warmup"):
            return original(self, *args, **kwargs)
        with _gating.held(written=lambda: (args, kwargs)):
            return original(self, *args, **kwargs)

    setattr(cls, _ORIGINAL, original)
    cls.run = run


def install() -> None:
    """Wraps Triton's launch entry point now, or as soon as Triton is imported."""
    _post_import.when_imported("triton.runtime.jit", _wrap)


def uninstall(jit_module: Optional[ModuleType] = None) -> None:
    """Puts Triton's own launch entry point back (acb.disable())."""
    import sys

    module = jit_module or sys.modules.get("triton.runtime.jit")
    cls = getattr(module, "JITFunction", None) if module is not None else None
    if cls is not None and hasattr(cls, _ORIGINAL):
        cls.run = getattr(cls, _ORIGINAL)
        delattr(cls, _ORIGINAL)
