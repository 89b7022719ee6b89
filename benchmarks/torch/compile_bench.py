"""What holding the device across a torch.compile call costs (python/acb/_compile.py),
with the lease held, as paired rounds in one process after acb.enable().

The compiled function adds 1 to one tensor in place and returns a new one
(4 floats each), so every call goes through dynamo's guards, AOTAutograd's
runtime wrapper and one Inductor graph, and acb marks one mutated input and
one output. Rounds alternate (ABBA) the same call loop with acb's wrappers
taken out (Inductor's CompiledFxGraph.__call__ back to the original, the
hold removed from this dynamo context's enter/exit hooks) and put back; a
figure is the fastest quartile of each side (as hook_bench.py explains).

FIGURE compiled_call_baseline_ns: fastest quartile of the rounds without
  acb's wrappers, ns per compiled call.
FIGURE compiled_call_gate_ns: with the wrappers minus without, ns per call.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, List

import torch

import acb
from acb import _compile
from bench_common import Broker, figure
from hook_bench import paired

CALLS = 1_000  # per timing (~20 ms)


def dynamo_context(compiled: Callable[..., Any]) -> Any:
    """The _TorchDynamoContext behind a torch.compile'd function (its wrapper's `self`)."""
    cells = dict(zip(compiled.__code__.co_freevars, compiled.__closure__ or ()))
    return cells["self"].cell_contents


def main() -> None:
    torch.set_num_threads(1)
    broker = Broker("256MiB")
    try:
        os.environ.update({k: v for k, v in broker.env().items() if k.startswith("ACB_") and k != "ACB_ENABLE"})
        acb.enable()
        x, y = torch.zeros(4), torch.ones(4)

        @torch.compile
        def step(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            a.add_(1)
            return b * 2

        step(x, y)  # compiles; holds the lease from here on
        assert acb.status().lease_state == "holding"
        from torch._inductor.output_code import CompiledFxGraph

        gated_call = CompiledFxGraph.__call__
        hooks: List[Any] = dynamo_context(step).enter_exit_hooks
        assert _compile._hold_compiled_call in hooks, "the dynamo context was created without acb's hold"

        def calls() -> float:
            start = time.perf_counter_ns()
            for _ in range(CALLS):
                step(x, y)
            return (time.perf_counter_ns() - start) / CALLS

        def ungated() -> float:
            CompiledFxGraph.__call__ = gated_call.__wrapped__
            hooks.remove(_compile._hold_compiled_call)
            try:
                return calls()
            finally:
                hooks.append(_compile._hold_compiled_call)
                CompiledFxGraph.__call__ = gated_call

        calls()
        ungated()  # first-call costs out of the rounds
        base, gated = paired(ungated, calls)
        assert acb.status().lease_state == "holding", "the lease was lost mid-benchmark; figures are not lease-held"
        acb.disable()
    finally:
        broker.close()
    figure("compiled_call_baseline_ns", base, "ns")
    figure("compiled_call_gate_ns", gated - base, "ns")


if __name__ == "__main__":
    main()
