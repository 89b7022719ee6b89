"""torch.compile under acb: each compiled call holds the device from its start
to its end, and what it wrote is marked before the device may be given away.

Compiled code writes tensor memory through raw pointers (Inductor's C++ and
Triton kernels update parameters, optimizer state, BatchNorm statistics and
buffers in place) and can run longer than the idle gap without issuing an
operator. Three interception points, each held like one outer operator
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
  whole compiled call: guards, graphs, the eager code between graph breaks,
  and on a first call the compilation itself (which saves and restores the
  RNG state and, with max-autotune, benchmarks kernels on real memory).
- ``torch.random.get_rng_state``/``set_rng_state`` (and their ``torch.``
  aliases): the generator copies the state tensor's bytes outside any
  operator; the state read back is fresh memory, marked written.

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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from acb import _gating

INDUCTOR_MODULE = "torch._inductor.output_code"
DYNAMO_MODULE = "torch._dynamo.eval_frame"
INDUCTOR_UTILS_MODULE = "torch._inductor.utils"

#: (owner, attribute name, original value) of every patch in place
_patched: List[Tuple[Any, str, Any]] = []
#: the notes printed so far
_noted: set = set()


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
        return cached
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
        # After AOTAutograd the graph's inputs and outputs are plain tensors (subclasses were flattened).
        written = list(inputs) if indices is None else [inputs[i] for i in indices]
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
                c.region_exit(False)

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

#: the acb._C whose region a dynamo hook entered (one module for the process; kept
#: so that a call entered before acb.disable() still leaves its region)
_entered: Any = None


def _region_exit_unmarked() -> None:
    _entered.region_exit(False)


def _hold_compiled_call() -> Callable[[], None]:
    """An enter/exit hook of a dynamo context: holds the device until the returned cleanup runs.
    Nothing is marked here: operators inside are marked by the op hook, graphs by their own wrapper."""
    global _entered
    c = _gating.c_module
    if c is None:
        return _nothing
    c.region_enter()
    _entered = c
    return _region_exit_unmarked


def _nothing() -> None:
    pass


def _held_context_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        hooks = getattr(self, "enter_exit_hooks", None)
        if callable(getattr(self, "callback", None)) and isinstance(hooks, list):
            hooks.append(_hold_compiled_call)  # last: its cleanup runs after the others'

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    return __init__


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

_INSTALLERS: Dict[str, Callable[[Any], None]] = {INDUCTOR_MODULE: _install_inductor, DYNAMO_MODULE: _install_dynamo,
                                                 INDUCTOR_UTILS_MODULE: _install_subprocess_env}


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

        spec.loader.exec_module = exec_module  # this spec's own loader instance only
        return spec


_hook: Optional[_ImportHook] = None


def install() -> None:
    """Called by acb.enable() (torch is imported): patches what is imported, and the rest on import."""
    global _hook
    if _hook is not None:
        return
    import torch

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
