"""Holding the device across work the op hook does not see one operator at a time.

Compiled graphs, CUDA graph replays, Triton launches, collectives and exports
write tensor memory through raw pointers. Each such call runs inside
``held(...)``: the gate is held like one outer operator (no offload and no
yield while any part of the call runs; operators it issues run nested), and
before the gate is let go the tensors the call may have written are marked,
so the next offload copies them instead of skipping them as clean.

``plain_tensors`` finds the storages behind tensor subclasses (wrapper
subclasses with ``__tensor_flatten__``: DTensor, Float8, NF4 ...), whose own
storage holds no data. The op hook calls it too (from C++, under the GIL)
for the written arguments of an operator that are such subclasses.

Import cost: none until called (torch is imported by the callers).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, List, Optional

#: the loaded acb._C while acb is enabled, else None (set by acb._api)
c_module: Any = None


def _forget_in_forked_child() -> None:
    # A forked child has no lease and no broker connection (session.cpp
    # switches the op hook off there): held() must not wait for one.
    global c_module
    c_module = None


os.register_at_fork(after_in_child=_forget_in_forked_child)


def plain_tensors(values: Iterable[Any]) -> List[Any]:
    """The plain tensors in `values` (nested lists, tuples and dicts too), with
    every traceable wrapper subclass replaced by its inner tensors, recursively."""
    import torch
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    out: List[Any] = []
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, torch.Tensor):
            if is_traceable_wrapper_subclass(value):
                names, _ = value.__tensor_flatten__()
                stack.extend(getattr(value, name) for name in names)
            else:
                out.append(value)
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
    return out


def mark_written(values: Iterable[Any]) -> None:
    """Marks the storages of the tensors in `values` (subclasses flattened) written."""
    c = c_module
    if c is not None:
        c.mark_tensors_written(plain_tensors(values))


@contextmanager
def held(written: Optional[Callable[[], Iterable[Any]]] = None, mark_all: bool = False) -> Iterator[None]:
    """Holds the device for the block; on the way out (also when it raises)
    marks what `written()` returns, or every segment with `mark_all`, before
    the gate is let go. Does nothing while acb is not enabled."""
    c = c_module
    if c is None:
        yield
        return
    c.region_enter()
    try:
        yield
    finally:
        try:
            if written is not None and not mark_all:
                c.mark_tensors_written(plain_tensors(written()))
        finally:
            c.region_exit(mark_all=mark_all)
