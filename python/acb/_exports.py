"""Tensor memory read or written outside operators: saving, copying out, and
exports to other libraries.

The op hook sees memory only through operators. Two kinds of Python-level
entry points touch raw storage without one:

- Calls that copy and are done when they return: ``torch.save``/``torch.load``,
  pickling (``Tensor.__reduce_ex__``, storages' ``__reduce__``),
  ``copy.deepcopy``, storages' ``tolist()`` (``Tensor.tolist()`` is
  ``acb._host_reads``'), and moving a storage to shared memory for
  ``torch.multiprocessing`` (``_share_fd_cpu_``/``_share_filename_cpu_``).
  Each runs inside ``acb._gating.held()``: the device is held for the call, so
  its memory is resident and stays so. They only read tensor memory; what
  they write is freshly allocated, which the arena already counts as
  written, so nothing is marked.
- Exports whose memory outlives the call: ``Tensor.numpy()`` (and so
  ``__array__``, ``numpy.asarray``, ``memoryview`` of the array) and DLPack
  (``Tensor.__dlpack__``, ``torch.utils.dlpack.to_dlpack``). Another library
  may read or write that memory at any time, lease or not, so the storage is
  pinned (``Arena::pin``): it stays resident until the exporting object dies
  (``weakref.finalize`` on the numpy array, whose views keep it alive; the
  capsule's deleter for DLPack, wrapped in C++), and it then counts as
  written, so the next offload copies it. While an export lives an evict
  releases only the process's other memory (docs/torch.md, "Exports").

``install()`` (from ``acb.enable()``) replaces these attributes of torch's
classes and modules once; ``uninstall()`` puts the originals back. Code
that took a reference before (``from torch import save``) keeps the original.

Import cost: none until installed (torch is imported by the caller).
"""

from __future__ import annotations

import functools
import weakref
from typing import Any, Callable, List, Tuple

from acb import _gating

#: (owner, attribute name, original, whether the owner itself held it) of every replaced attribute
_installed: List[Tuple[Any, str, Any, bool]] = []


def _held_call(original: Callable[..., Any]) -> Callable[..., Any]:
    """`original` run with the device held (it only reads tensor memory)."""

    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        with _gating.held():
            return original(*args, **kwargs)

    return call


def _numpy(original: Callable[..., Any]) -> Callable[..., Any]:
    """Tensor.numpy: the storage stays pinned while the array (or a view of it) lives."""

    @functools.wraps(original)
    def numpy(self: Any, *args: Any, **kwargs: Any) -> Any:
        c = _gating.c_module
        with _gating.held():
            array = original(self, *args, **kwargs)
            if c is None or array.size == 0:
                return array
            pinned = c.pin_storage(self)
            if pinned is None:
                return array
            address, nbytes = pinned
            data = array.__array_interface__["data"][0]
            if not address <= data < address + nbytes:  # a copy (force=True): nothing shared
                c.unpin(address, nbytes)
                return array
            weakref.finalize(array, c.unpin, address, nbytes)
            return array

    return numpy


def _dlpack(original: Callable[..., Any]) -> Callable[..., Any]:
    """__dlpack__ / to_dlpack: the storage stays pinned until the capsule's tensor is deleted."""

    @functools.wraps(original)
    def dlpack(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        c = _gating.c_module
        if c is None or (tensor.device.type != "cpu" and not tensor.is_cuda):
            return original(tensor, *args, **kwargs)
        with _gating.held():
            capsule = original(tensor, *args, **kwargs)
            if c is not None:
                c.pin_dlpack_capsule(capsule, tensor)
            return capsule

    return dlpack


def _replace(owner: Any, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    own = name in vars(owner)  # else inherited (a class's base defines it)
    original = getattr(owner, name)
    _installed.append((owner, name, original, own))
    setattr(owner, name, wrap(original))


def install(emulated: bool) -> None:
    """Replaces the entry points listed in the module docstring (idempotent). On CUDA
    only DLPack: numpy() and pickling see CPU tensors there, never acb's memory (saving
    a CUDA tensor copies it to the host through operators), and holding the device for
    them would make a CPU phase wait for the GPU."""
    if _installed:
        return
    import torch
    import torch.serialization
    import torch.utils.dlpack

    if not emulated:
        _replace(torch.Tensor, "__dlpack__", _dlpack)
        _replace(torch.utils.dlpack, "to_dlpack", _dlpack)
        if getattr(torch, "to_dlpack", None) is _installed[-1][2]:
            _replace(torch, "to_dlpack", _dlpack)
        return
    for module in (torch, torch.serialization):
        _replace(module, "save", _held_call)
        _replace(module, "load", _held_call)  # writes only fresh storages, read from the file
    for name in ("__reduce_ex__", "__deepcopy__"):  # Tensor.tolist: acb._host_reads
        _replace(torch.Tensor, name, _held_call)
    for cls in (torch.UntypedStorage, torch.TypedStorage):
        for name in ("__reduce__", "__deepcopy__", "tolist"):
            _replace(cls, name, _held_call)
    for name in ("_share_fd_cpu_", "_share_filename_cpu_"):
        _replace(torch.UntypedStorage, name, _held_call)
    _replace(torch.Tensor, "numpy", _numpy)
    _replace(torch.Tensor, "__dlpack__", _dlpack)
    _replace(torch.utils.dlpack, "to_dlpack", _dlpack)
    if getattr(torch, "to_dlpack", None) is _installed[-1][2]:
        _replace(torch, "to_dlpack", _dlpack)


def uninstall() -> None:
    """Puts back every original (live exports keep their pins until they die)."""
    while _installed:
        owner, name, original, own = _installed.pop()
        if own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)
