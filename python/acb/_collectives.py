"""Holding the device across torch.distributed collectives until their work is done.

A c10d collective returns before its work is done: gloo runs it on its own
threads and the caller waits on a Work object (or, with async_op=True, goes
on and waits later), so the tensors are written after the operator returned,
after the op hook let go of the gate. The op hook marks c10d operators'
tensor arguments written (their schemas declare no write), but only the
Python layer knows when the work ends.

``install()`` wraps the torch.distributed collectives: each call runs inside
``_gating.held`` (the gate held like one outer operator). A call that returns
a pending Work (async_op=True, isend/irecv, batch_isend_irecv) keeps one more
unit of the gate held (``_C.hold_gate``) until the Work's future completes;
then its tensor arguments are marked written and the unit is let go
(``_C.release_gate``), so no offload runs while the work can still write,
whether or not the program ever calls wait(). For a Work without a future a
watcher thread waits for it instead (waiting in the call would turn an
irecv posted before its isend into a deadlock).

Collectives that were looked up before ``install()`` (``from
torch.distributed import all_reduce`` before acb.enable()) are not wrapped,
and those issued from C++ (DistributedDataParallel's reducer) never pass
here: for them the op hook holds the device for each Work a c10d operator
returns until it completes (csrc/torch/collective_work.h).

Thread-safety: install/uninstall run under acb._api's lock; the completion
callbacks run on the backend's threads (with the GIL).
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Dict, List, Tuple

from acb import _gating

#: The torch.distributed functions that start collective or point-to-point
#: work on tensors (the *_object variants call these).
COLLECTIVES = (
    "all_reduce", "all_reduce_coalesced", "reduce", "broadcast", "all_gather", "all_gather_coalesced",
    "all_gather_into_tensor", "_all_gather_base", "gather", "scatter", "reduce_scatter",
    "reduce_scatter_tensor", "_reduce_scatter_base", "all_to_all", "all_to_all_single", "barrier",
    "send", "recv", "isend", "irecv", "batch_isend_irecv",
)

_originals: Dict[Tuple[Any, str], Callable[..., Any]] = {}


def _tensors_of(args: Any, kwargs: Any) -> List[Any]:
    """The plain tensors a collective's arguments hold (P2POp lists of batch_isend_irecv too)."""
    import torch

    values = [args, kwargs]
    for value in [*args, *kwargs.values()]:
        if isinstance(value, (list, tuple)):
            values.extend(getattr(item, "tensor", None) for item in value
                          if isinstance(getattr(item, "tensor", None), torch.Tensor))
    return _gating.plain_tensors(values)


def _hold_until_done(c: Any, work: Any, tensors: List[Any]) -> None:
    """Keeps one unit of the gate held until `work` completes, then marks `tensors` and lets go.
    Called inside held(), so taking the unit never blocks."""
    c.hold_gate()
    once = threading.Lock()  # taken by the first call: the unit is let go exactly once

    def done(_: Any = None) -> None:
        if not once.acquire(blocking=False):
            return
        try:
            c.mark_tensors_written(tensors)
        finally:
            c.release_gate()

    try:
        work.get_future().add_done_callback(done)
        return
    except (RuntimeError, AttributeError):
        pass  # this backend's Work has no future

    def watch() -> None:
        try:
            work.wait()
        finally:
            done()

    threading.Thread(target=watch, name="acb-collective-watch", daemon=True).start()


def _wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def collective(*args: Any, **kwargs: Any) -> Any:
        c = _gating.c_module
        if c is None:
            return fn(*args, **kwargs)
        tensors = _tensors_of(args, kwargs)
        with _gating.held(written=lambda: tensors):
            result = fn(*args, **kwargs)
            works = result if isinstance(result, list) else [result]
            for work in works:
                if work is not None and hasattr(work, "wait"):
                    _hold_until_done(c, work, tensors)
        return result

    collective.__acb_wrapped__ = fn  # type: ignore[attr-defined]
    return collective


def install() -> None:
    """Wraps the collectives of torch.distributed (and of its distributed_c10d module, which
    the *_object variants and other torch code call). Does nothing without torch.distributed."""
    import torch.distributed as dist

    if _originals or not dist.is_available():
        return
    from torch.distributed import distributed_c10d

    for module in (dist, distributed_c10d):
        for name in COLLECTIVES:
            fn = getattr(module, name, None)
            if fn is None or hasattr(fn, "__acb_wrapped__"):
                continue
            _originals[(module, name)] = fn
            setattr(module, name, _wrap(fn))


def uninstall() -> None:
    for (module, name), fn in _originals.items():
        setattr(module, name, fn)
    _originals.clear()
