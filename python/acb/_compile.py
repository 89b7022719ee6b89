"""torch.compile under acb: each compiled call holds the device from its start
to its end, and what it wrote is marked before the device may be given away.

Compiled code writes tensor memory through raw pointers (Inductor's C++ and
Triton kernels update parameters, optimizer state, BatchNorm statistics and
buffers in place) and can run longer than the idle gap without issuing an
operator. The interception points, each held like one outer operator
(``acb._gating``; operators issued inside run nested: marked, not gated):

- Inductor's compiled graph, ``torch._inductor.output_code.CompiledFxGraph.__call__``
  (one class patch, so graphs compiled before ``acb.enable()`` are covered
  too): held for the call; afterwards the inputs Inductor recorded as mutated
  (``mutated_input_idxs``, taken before the call because the graph empties
  its input list) and the outputs are marked written. Without that metadata
  (another torch) every tensor input is marked instead, with one note on
  stderr. An inference graph that only reads its weights leaves them clean.
- The dynamo frame: every ``torch.compile`` context created after enable()
  gets one more entry in its per-call enter/exit hooks
  (``_TorchDynamoContext.enter_exit_hooks``), which dynamo runs around the
  whole compiled call: guards, graphs and the eager code between graph
  breaks. Compiling is let go of: dynamo's ``convert_frame._compile`` and
  AOTAutograd's lazy backward compile release the frame's hold while they
  run (seconds of Python work: others would wait, and the broker takes the
  lease back from a holder far past its revoke deadline); what compiling
  touches outside operators is held on its own:
- ``torch.random.get_rng_state``/``set_rng_state`` (and their ``torch.``
  aliases; dynamo saves and restores the RNG state around each compile): the
  generator copies the state tensor's bytes outside any operator; the state
  read back is fresh memory, marked written.
- Inductor's benchmarker (``torch._inductor.runtime.benchmarking``; max-autotune
  runs candidate kernels on real memory): each benchmark is held and marks
  every segment at its end.

Inductor's helper processes (compile workers, autotuning) start with
``ACB_ENABLE=0``: they touch no brokered memory, and as clients of their own
they could wait for the device their parent holds while it waits for them.

Patches are applied when their module is imported (a ``sys.meta_path``
finder waits for it), so enable() imports no part of dynamo or Inductor;
``uninstall()`` puts the originals back. While acb is not enabled the
wrappers only call through.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, cast

from acb import _gating

INDUCTOR_MODULE = "torch._inductor.output_code"
DYNAMO_MODULE = "torch._dynamo.eval_frame"
INDUCTOR_UTILS_MODULE = "torch._inductor.utils"
DYNAMO_COMPILE_MODULE = "torch._dynamo.convert_frame"
AOT_RUNTIME_MODULE = "torch._functorch._aot_autograd.runtime_wrappers"
BENCHMARK_MODULE = "torch._inductor.runtime.benchmarking"

#: (owner, attribute name, original value) of every patch in place
_patched: List[Tuple[Any, str, Any]] = []
#: the notes printed so far
_noted: Set[str] = set()


def _note_once(message: str) -> None:
    """One line on stderr per thing this torch lacks (acb then falls back to a safe mode)."""
    if message in _noted:
        return
    _noted.add(message)
    print(f"acb: {message}", file=sys.stderr)


def _patch(owner: Any, name: str, replacement: Any) -> None:
    _patched.append((owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)))
    setattr(owner, name, replacement)


# -- Inductor's compiled graph ----------------------------------------------------------------------------------------

def _written_input_indices(graph: Any) -> Optional[Tuple[int, ...]]:
    """The input positions the graph may write (cached on the graph object), or None: all of them."""
    cached = graph.__dict__.get("_acb_written_inputs", False)
    if cached is not False:
        return cast(Optional[Tuple[int, ...]], cached)  # what an earlier call stored below
    indices = getattr(graph, "mutated_input_idxs", None)
    if indices is None:
        _note_once(f"{type(graph).__name__} has no mutated_input_idxs in this torch; acb marks every tensor "
                   "input of each compiled graph call written (correct, but clean weights are copied again at "
                   "every offload)")
        result = None
    else:
        result = tuple(sorted(indices))
    graph.__dict__["_acb_written_inputs"] = result
    return result


def _held_graph_call(original: Callable[[Any, Sequence[Any]], Any]) -> Callable[[Any, Sequence[Any]], Any]:
    def __call__(self: Any, inputs: Sequence[Any]) -> Any:
        c = _gating.c_module
        if c is None:
            return original(self, inputs)
        indices = _written_input_indices(self)
        if type(inputs) is list:
            # One crossing into C++: hold, call, mark (the same steps as below, without their pybind costs).
            return c.held_graph_call(original, self, inputs, indices)
        # After AOTAutograd the graph's inputs and outputs are plain tensors (subclasses were flattened).
        written = list(inputs) if indices is None else [inputs[i] for i in indices]
        # Inside a hold already (the dynamo frame's, a region, an operator): the device stays held
        # for the whole call without a nested one; only the marking is this call's own.
        outermost = c.op_depth() == 0
        if outermost:
            c.region_enter()
        outputs: Any = ()
        try:
            outputs = original(self, inputs)
            return outputs
        finally:
            try:
                written.extend(outputs if isinstance(outputs, (list, tuple)) else (outputs,))
                c.mark_tensors_written(written)
            finally:
                if outermost:
                    c.region_exit(False)  # mark_all positional: pybind's keyword matching costs per call

    __call__.__wrapped__ = original  # type: ignore[attr-defined]
    return __call__


def _install_inductor(module: Any) -> None:
    graph_class = getattr(module, "CompiledFxGraph", None)
    if graph_class is None or "__call__" not in graph_class.__dict__:
        _note_once(f"{INDUCTOR_MODULE} has no CompiledFxGraph.__call__ in this torch; Inductor's graphs are held "
                   "only by the dynamo frame around them and their raw writes are not marked: wrap compiled "
                   "calls in acb.region()")
        return
    _patch(graph_class, "__call__", _held_graph_call(graph_class.__dict__["__call__"]))


# -- the dynamo frame -------------------------------------------------------------------------------------------------

#: A dynamo context's enter/exit hook: holds the device until the cleanup it returns
#: (_region_exit_unmarked) runs. acb._C.frame_hold, one C++ call, set by install(); once acb
#: is disabled it holds nothing. Nothing is marked here: operators inside are marked by the op
#: hook, graphs by their own wrapper.
_hold_compiled_call: Any = None
#: the cleanup _hold_compiled_call returns: acb._C.region_exit_unmarked
_region_exit_unmarked: Any = None


def _held_context_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        hooks = getattr(self, "enter_exit_hooks", None)
        if callable(getattr(self, "callback", None)) and isinstance(hooks, list):
            hooks.append(_hold_compiled_call)  # last: its cleanup runs after the others'

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    return __init__


def _frame_holds() -> int:
    """How many dynamo-frame holds this thread's stack has: frames of dynamo's compiled-call wrapper
    whose pending cleanups include ours (0 when dynamo's wrapper looks different: nothing is released)."""
    count = 0
    frame: Optional[FrameType] = sys._getframe(1)
    while frame is not None:
        if "cleanups" in frame.f_code.co_varnames:
            cleanups = frame.f_locals.get("cleanups")
            if isinstance(cleanups, list) and _region_exit_unmarked in cleanups:
                count += 1
        frame = frame.f_back
    return count


def _always(*args: Any, **kwargs: Any) -> bool:
    return True


def _released_while_compiling(original: Callable[..., Any],
                              compiles: Callable[..., bool] = _always) -> Callable[..., Any]:
    """Compiling (dynamo, AOTAutograd, Inductor, g++) takes seconds and is Python work: the frame's
    hold is let go meanwhile, so other processes are not kept waiting and the broker does not
    take the lease back from a holder past its revoke deadline. Only when every hold of this
    thread is a frame hold: an acb.region() or an operator around the call keeps its hold. Nothing
    of the call has written raw memory unmarked at that point (each graph marks before its end)."""
    def compile_unheld(*args: Any, **kwargs: Any) -> Any:
        c = _gating.c_module
        holds = _frame_holds() if c is not None and compiles(*args, **kwargs) else 0
        if holds == 0 or c.op_depth() != holds:
            return original(*args, **kwargs)
        for _ in range(holds):
            c.region_exit(False)
        try:
            return original(*args, **kwargs)
        finally:
            for _ in range(holds):
                c.region_enter()

    compile_unheld.__wrapped__ = original  # type: ignore[attr-defined]
    return compile_unheld


def _install_dynamo(module: Any) -> None:
    context_class = getattr(module, "_TorchDynamoContext", None)
    if context_class is None or "__init__" not in context_class.__dict__:
        _note_once(f"{DYNAMO_MODULE} has no _TorchDynamoContext.__init__ in this torch; compiled graphs are held "
                   "by acb, the dynamo code around them (and a first call's compilation) is not")
        return
    _patch(context_class, "__init__", _held_context_init(context_class.__dict__["__init__"]))


# -- RNG state --------------------------------------------------------------------------------------------------------

def _held_rng(original: Callable[..., Any], returns_state: bool) -> Callable[..., Any]:
    def rng_state_call(*args: Any, **kwargs: Any) -> Any:
        c = _gating.c_module
        if c is None:
            return original(*args, **kwargs)
        c.region_enter()
        result = None
        try:
            result = original(*args, **kwargs)
            return result
        finally:
            try:
                if returns_state and result is not None:
                    c.mark_tensors_written([result])
            finally:
                c.region_exit(False)

    rng_state_call.__name__ = getattr(original, "__name__", "rng_state_call")
    rng_state_call.__doc__ = getattr(original, "__doc__", None)
    rng_state_call.__wrapped__ = original  # type: ignore[attr-defined]
    return rng_state_call


def _install_rng(torch: Any) -> None:
    for owner in (torch.random, torch):
        for name, returns_state in (("get_rng_state", True), ("set_rng_state", False)):
            original = getattr(owner, name, None)
            if original is not None and not hasattr(original, "__wrapped__"):
                _patch(owner, name, _held_rng(original, returns_state))


def _install_dynamo_compile(module: Any) -> None:
    if callable(getattr(module, "_compile", None)):
        _patch(module, "_compile", _released_while_compiling(module._compile))
    else:
        _note_once(f"{DYNAMO_COMPILE_MODULE} has no _compile in this torch; a first compiled call holds the "
                   "device while it compiles")


def _install_lazy_backward_compile(module: Any) -> None:
    compiler = getattr(module, "_AutogradBackwardCompiler", None)
    if compiler is not None and "get_or_compile" in compiler.__dict__:
        # Called for every backward; it compiles only the first time (compiled_bw still None).
        _patch(compiler, "get_or_compile",
               _released_while_compiling(compiler.__dict__["get_or_compile"],
                                         lambda self, *a, **k: getattr(self, "compiled_bw", None) is None))
    else:
        _note_once(f"{AOT_RUNTIME_MODULE} has no _AutogradBackwardCompiler.get_or_compile in this torch; a "
                   "compiled call whose backward compiles lazily holds the device while it compiles")


def _install_benchmarker(module: Any) -> None:
    """Autotuning (max-autotune) runs candidate kernels on real memory through raw pointers while
    compiling, outside the frame's hold: each benchmark is held, and marks every segment at its
    end when it is the outermost hold (compile time only)."""
    base = getattr(module, "Benchmarker", None)
    if not isinstance(base, type):
        return
    for cls in [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, base)]:
        for name in ("benchmark", "benchmark_cpu", "benchmark_gpu"):
            if name in cls.__dict__:
                _patch(cls, name, _held_benchmark(cls.__dict__[name]))


def _held_benchmark(original: Callable[..., Any]) -> Callable[..., Any]:
    def benchmark(*args: Any, **kwargs: Any) -> Any:
        with _gating.held(mark_all=True):
            return original(*args, **kwargs)

    benchmark.__wrapped__ = original  # type: ignore[attr-defined]
    return benchmark


# -- Inductor's helper processes -------------------------------------------------------------------------------------

#: the modules that take python_subprocess_env from torch._inductor.utils by name
SUBPROCESS_ENV_USERS = ("torch._inductor.compile_worker.subproc_pool", "torch._inductor.autotune_process",
                        "torch._inductor.cpu_vec_isa")


def _without_acb(original: Callable[[], Dict[str, str]]) -> Callable[[], Dict[str, str]]:
    def python_subprocess_env() -> Dict[str, str]:
        return {**original(), "ACB_ENABLE": "0"}

    python_subprocess_env.__wrapped__ = original  # type: ignore[attr-defined]
    return python_subprocess_env


def _install_subprocess_env(module: Any) -> None:
    """Inductor's compile workers and autotuning processes inherit the environment, and with it
    ACB_ENABLE: each would join the broker as a client of its own, and one that needed the device
    would wait for its parent, which holds the device while it waits for the helper (a deadlock).
    They work on no brokered memory, so they start with ACB_ENABLE=0."""
    original = getattr(module, "python_subprocess_env", None)
    if original is None:
        return
    replacement = _without_acb(original)
    _patch(module, "python_subprocess_env", replacement)
    for name in SUBPROCESS_ENV_USERS:  # imported before the patch: they hold the original
        user = sys.modules.get(name)
        if user is not None and getattr(user, "python_subprocess_env", None) is original:
            _patch(user, "python_subprocess_env", replacement)


# -- installing -------------------------------------------------------------------------------------------------------

_INSTALLERS: Dict[str, Callable[[Any], None]] = {
    INDUCTOR_MODULE: _install_inductor,
    DYNAMO_MODULE: _install_dynamo,
    DYNAMO_COMPILE_MODULE: _install_dynamo_compile,
    AOT_RUNTIME_MODULE: _install_lazy_backward_compile,
    BENCHMARK_MODULE: _install_benchmarker,
    INDUCTOR_UTILS_MODULE: _install_subprocess_env,
}


class _ImportHook(importlib.abc.MetaPathFinder):
    """Patches a module of _INSTALLERS right after its own code has run."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Any = None) -> Any:
        installer = _INSTALLERS.get(fullname)
        if installer is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        inner_exec = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            inner_exec(module)
            if _hook is self:  # not uninstalled meanwhile
                installer(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]  # this spec's own loader instance only
        return spec


_hook: Optional[_ImportHook] = None


def install() -> None:
    """Called by acb.enable() (torch is imported): patches what is imported, and the rest on import."""
    global _hook
    if _hook is not None:
        return
    import torch

    global _hold_compiled_call, _region_exit_unmarked
    _hold_compiled_call = _gating.c_module.frame_hold
    _region_exit_unmarked = _gating.c_module.region_exit_unmarked
    _hook = _ImportHook()
    _install_rng(torch)
    for name, installer in _INSTALLERS.items():
        module = sys.modules.get(name)
        if module is not None:
            installer(module)
    sys.meta_path.insert(0, _hook)


def uninstall() -> None:
    """Called by acb.disable(): the originals come back, the import hook goes."""
    global _hook
    if _hook is None:
        return
    sys.meta_path[:] = [f for f in sys.meta_path if f is not _hook]
    _hook = None
    while _patched:
        owner, name, original = _patched.pop()
        setattr(owner, name, original)
