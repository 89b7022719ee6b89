"""Runs a callback once a module has been imported, whenever that happens.

acb adapts to libraries the program may import after acb.enable() (Triton,
for instance) without importing them itself: if the module is already in
sys.modules the callback runs now; otherwise a sys.meta_path finder waits for
its import, lets the normal finders locate it and wraps that spec's
exec_module, as acb._autoactivate does for torch.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Callable, Dict, List, Optional, Sequence

_waiting: Dict[str, List[Callable[[ModuleType], None]]] = {}


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        callbacks = _waiting.pop(fullname, None)
        if callbacks is None:
            return None
        if not _waiting:
            sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        # The other finders locate the module (ours is skipped: nothing waits for it any more).
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        inner_exec = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            inner_exec(module)
            for callback in callbacks:
                callback(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]  # this spec's own loader instance only
        return spec


_finder = _Finder()


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Calls callback(module) once `name` is imported: now when it already is."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    _waiting.setdefault(name, []).append(callback)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
