"""Wrapped: a wrapper tensor subclass of the DTensor / FSDP2 / Float8 kind
(``_make_wrapper_subclass`` + ``__torch_dispatch__`` + ``__tensor_flatten__``).
The wrapper has no storage of its own; every operator on it runs on its inner
tensor inside ``__torch_dispatch__``, below the op hook's own call."""

from __future__ import annotations

import torch
from torch.utils import _pytree as pytree


class Wrapped(torch.Tensor):
    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> Wrapped:
        return torch.Tensor._make_wrapper_subclass(cls, inner.shape, dtype=inner.dtype, device=inner.device,
                                                   strides=inner.stride(), requires_grad=False)

    def __init__(self, inner: torch.Tensor) -> None:
        self.inner = inner

    def __tensor_flatten__(self):
        return ["inner"], None

    @staticmethod
    def __tensor_unflatten__(inner_tensors, ctx, outer_size, outer_stride) -> Wrapped:
        return Wrapped(inner_tensors["inner"])

    def __repr__(self) -> str:
        return f"Wrapped({self.inner!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        def unwrap(x):
            return x.inner if isinstance(x, Wrapped) else x

        out = func(*pytree.tree_map(unwrap, args), **pytree.tree_map(unwrap, kwargs or {}))
        if func._schema.arguments and func._schema.arguments[0].is_write and isinstance(args[0], Wrapped):
            return args[0]  # in place: the wrapper itself, like the inner op returns its argument
        return pytree.tree_map(lambda x: Wrapped(x) if isinstance(x, torch.Tensor) else x, out)
