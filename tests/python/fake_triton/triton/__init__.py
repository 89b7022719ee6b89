"""A stand-in for Triton's launch path, for tests on machines without a GPU.

It keeps the shape of the real entry point that acb wraps
(``triton.runtime.jit.JITFunction.run(*args, grid, warmup, **kwargs)``, reached
through ``kernel[grid](...)``) and "runs" a kernel by calling its Python body
on NumPy views of the tensor arguments: writes through raw pointers, outside
any torch operator, as a real Triton kernel's stores are.
"""

from triton.runtime.jit import JITFunction

jit = JITFunction
