"""Tensor methods and constructors that touch tensor memory with no operator in flight, held.

In emulation mode CPU tensors live in the emulated device's arena, so their
memory is offloaded (made PROT_NONE) whenever the process gives the device
away. ``Tensor.tolist()`` runs two operators (resolve_conj, resolve_neg) and
then reads every element in C++ with no operator in flight: the monitor sees
an idle gap (a list of a million floats takes longer than the default 10 ms
gap to build), yields, an evict offloads the tensor and the read faults.
Here such methods run inside ``_gating.held()``, like one outer operator, so
the device is held and the memory resident from the first element read to
the last. They only read, so nothing is marked written.

The constructors from Python data (``torch.tensor``, ``torch.as_tensor``,
``torch.asarray``, ``Tensor.new_tensor``) allocate through an operator and
then fill the fresh memory from the list or buffer after it has returned
(for a long list, longer than the idle gap): held the same way, from the
allocation to the last element stored. The arena counted the fresh memory
as written when it allocated it, so nothing needs marking.

On CUDA ``tolist()`` copies to the host through an operator first and reads
host memory, so nothing is installed there.

Thread-safety: install() and uninstall() are called under acb._api's lock.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Optional

#: method name -> torch.Tensor's own attribute it replaced (None: inherited), while installed
_replaced: Dict[str, Optional[Callable[..., Any]]] = {}

#: Tensor methods that read or fill memory after their last operator returns.
METHODS = ("tolist", "new_tensor")
#: torch functions that fill fresh memory after their last operator returns.
FUNCTIONS = ("tensor", "as_tensor", "asarray")
#: torch function name -> the original, while installed
_replaced_functions: Dict[str, Callable[..., Any]] = {}


def _held(method: Callable[..., Any]) -> Callable[..., Any]:
    import torch

    from acb import _gating

    is_compiling = torch.compiler.is_compiling

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if is_compiling():  # dynamo tracing: it sees torch's own function (the graph is held as a whole)
            return method(*args, **kwargs)
        with _gating.held():
            return method(*args, **kwargs)

    return wrapper


def install(torch: Any) -> None:
    if _replaced:
        return
    for name in METHODS:
        # tolist is inherited from torch._C.TensorBase: remember whether
        # torch.Tensor had its own, so that uninstall() leaves it as it was.
        _replaced[name] = torch.Tensor.__dict__.get(name)
        setattr(torch.Tensor, name, _held(getattr(torch.Tensor, name)))
    for name in FUNCTIONS:
        _replaced_functions[name] = getattr(torch, name)
        setattr(torch, name, _held(_replaced_functions[name]))


def uninstall(torch: Any) -> None:
    for name, original in _replaced_functions.items():
        setattr(torch, name, original)
    _replaced_functions.clear()
    for name, own in _replaced.items():
        if own is None:
            delattr(torch.Tensor, name)
        else:
            setattr(torch.Tensor, name, own)
    _replaced.clear()
