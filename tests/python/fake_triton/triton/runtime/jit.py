"""The fake JITFunction (see triton/__init__.py)."""

import torch


class JITFunction:
    def __init__(self, fn):
        self.fn = fn

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.run(*args, grid=grid, warmup=False, **kwargs)

    def run(self, *args, grid, warmup, **kwargs):
        if warmup:
            return self
        views = [a.numpy() if isinstance(a, torch.Tensor) else a for a in args]
        self.fn(*views, **kwargs)
        return self
