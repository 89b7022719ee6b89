"""CUDA graphs while acb manages a process's CUDA memory.

A captured graph owns the memory its kernels use: torch's own allocator keeps
it in a graph-private pool, and torch tells a pluggable allocator about
capture only through hooks that acb's allocator does not implement yet. So
memory freed during capture would go back to acb's pools and be handed to
eager tensors while a replay still writes it. Until acb keeps graph pools
itself, it refuses capture with an error that says what to do, and turns
off the CUDA graphs of ``torch.compile(mode="reduce-overhead")`` (Inductor's
cudagraph trees) with one note on stderr: such programs run, with the same
results, as mode="default" plus the mode's other options. A replay (of a
graph captured some other way) holds the device and marks every segment
written, as acb.region() does.

All of this applies only where acb's CUDA allocator is installed; on the
emulated device CUDA graphs never touch acb's memory.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Dict, List, Tuple

from acb import AcbError, _gating

CAPTURE_REFUSED = (
    "acb: CUDA graph capture is not supported while acb manages this process's CUDA memory: acb's "
    "allocator does not keep the graph-private memory pools that a captured graph needs, so a replay "
    "could write memory that other tensors use. Run this program without acb (ACB_ENABLE=0, or without "
    "acb.enable()), or leave out the capture: torch.compile(mode=\"reduce-overhead\") works under acb "
    "(acb turns its CUDA graphs off)."
)
NOTE_CUDAGRAPHS_OFF = (
    "acb: CUDA graphs of torch.compile (mode=\"reduce-overhead\" or triton.cudagraphs) are turned off "
    "while acb manages this process's CUDA memory; compiled code runs without them, with the same results"
)

_patched: List[Tuple[Any, str, Callable[..., Any]]] = []
_noted = False


def _note_once() -> None:
    global _noted
    if not _noted:
        _noted = True
        print(NOTE_CUDAGRAPHS_OFF, file=sys.stderr)


def _patch(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = getattr(owner, name)
    _patched.append((owner, name, original))
    setattr(owner, name, functools.wraps(original)(make(original)))


def without_cudagraphs(options: Dict[str, Any]) -> Dict[str, Any]:
    """torch.compile options with Inductor's CUDA graphs turned off (noted once when they were on)."""
    if options.get("triton.cudagraphs") or options.get("triton_cudagraphs"):
        _note_once()
        options = {k: v for k, v in options.items() if k not in ("triton.cudagraphs", "triton_cudagraphs")}
        options["triton.cudagraphs"] = False
    return options


def install(torch: Any) -> None:
    """Refuses capture, turns off Inductor's CUDA graphs and gates replays (CUDA allocator only).
    For the rest of the process: acb's allocator stays installed after acb.disable()."""
    if _patched:
        return
    graph_class = torch.cuda.graphs.CUDAGraph

    def refuse(original: Callable[..., Any]) -> Callable[..., Any]:
        def capture_begin(self: Any, *args: Any, **kwargs: Any) -> Any:
            raise AcbError(CAPTURE_REFUSED)
        return capture_begin

    def gated(original: Callable[..., Any]) -> Callable[..., Any]:
        def replay(self: Any, *args: Any, **kwargs: Any) -> Any:
            with _gating.held(mark_all=True):
                return original(self, *args, **kwargs)
        return replay

    _patch(graph_class, "capture_begin", refuse)
    _patch(graph_class, "replay", gated)

    wrapper_class = getattr(torch, "_TorchCompileInductorWrapper", None)
    if wrapper_class is not None and hasattr(wrapper_class, "apply_options"):
        def filtered(original: Callable[..., Any]) -> Callable[..., Any]:
            def apply_options(self: Any, options: Any) -> Any:
                return original(self, without_cudagraphs(dict(options)) if options else options)
            return apply_options
        _patch(wrapper_class, "apply_options", filtered)
    inductor_config = torch._inductor.config
    if inductor_config.triton.cudagraphs:  # TORCHINDUCTOR_CUDAGRAPHS=1
        _note_once()
        inductor_config.triton.cudagraphs = False
