"""Hook cost per operator with the lease held, measured as paired rounds in
one process after acb.enable(): the lease is held and the arena allocator is
installed for every round, so the only thing that differs between the two
halves of a round is the hook itself.

Method: ROUNDS rounds; each round times the same tiny-op loop on the same
pre-allocated tensor once with this thread detached from the dispatch-key
hook (acb._C.detach_thread()) and once attached, in alternating order (ABBA,
so slow drift of the machine cancels). A figure is the fastest quartile of
the attached timings minus the fastest quartile of the detached ones (the
mean of the fastest quarter of rounds on each side). The fastest quartile,
not the median: on a shared 2-core machine most rounds are preempted by
other processes by varying amounts, which moved the difference of medians by
+-250 ns between runs (even below zero for the Python loop), while the
fastest quarter of rounds, the ones that ran mostly alone, agreed within
~40 ns. Timings are short (~15 ms) so that many rounds fit between
preemptions.

FIGURE tiny_op_baseline_ns_per_op: fastest quartile of detached rounds of
  the in-place loop.
FIGURE hook_ns_per_op: dispatch-key hook, in-place op: a C++ loop of
  tensor.add_(1) on 4 floats through the dispatcher (no Python per op).
  add_ is one of the operators with an unboxed hook kernel
  (csrc/torch/unboxed_op_list.h), as are the other frequent ones.
FIGURE hook_ns_per_op_boxed_fallback: the same for an operator without one,
  tensor.clamp_min_(0), which goes through the boxed fallback.
FIGURE hook_ns_per_op_fresh_output: dispatch-key hook, op that returns a new
  tensor: a Python loop of torch.add(x, 1) (the output comes from the arena;
  the hook does not mark it dirty again). Python's per-op cost is in both
  halves and cancels, but makes this figure noisier than the C++ one.
FIGURE hook_record_function_ns_per_op: the RecordFunction alternative (with
  the inputs and outputs dirty tracking would need), same C++ loop and method:
  thread detached, callback installed versus not.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, List, Tuple

import torch

import acb
from acb import _loader
from bench_common import Broker, figure

ROUNDS = 81
CPP_OPS = 10_000  # per timing of the C++ loop (~17 ms)
PY_OPS = 3_000  # per timing of the Python loop (~15 ms)


def fastest_quartile(values: List[float]) -> float:
    return statistics.mean(sorted(values)[: max(1, len(values) // 4)])


def paired(off: Callable[[], float], on: Callable[[], float]) -> Tuple[float, float]:
    """ns per op (fastest quartile of ROUNDS) without and with the measured thing, rounds in ABBA order."""
    off_ns: List[float] = []
    on_ns: List[float] = []
    for r in range(ROUNDS):
        if r % 2 == 0:
            off_ns.append(off())
            on_ns.append(on())
        else:
            on_ns.append(on())
            off_ns.append(off())
    return fastest_quartile(off_ns), fastest_quartile(on_ns)


def main() -> None:
    torch.set_num_threads(1)
    c_module = _loader.load()
    x = torch.zeros(4)
    broker = Broker("256MiB")
    try:
        import os

        os.environ.update({k: v for k, v in broker.env().items() if k.startswith("ACB_") and k != "ACB_ENABLE"})
        acb.enable()
        x.add_(1)  # takes the lease; from here on the fast path runs
        assert acb.status().lease_state == "holding"

        def cpp_loop() -> float:
            return c_module._bench_tiny_ops_ns(x, CPP_OPS, "add_")

        def cpp_fallback_loop() -> float:
            return c_module._bench_tiny_ops_ns(x, CPP_OPS, "clamp_min_")

        def detached(fn: Callable[[], float]) -> Callable[[], float]:
            def run() -> float:
                c_module.detach_thread()
                return fn()
            return run

        def attached(fn: Callable[[], float]) -> Callable[[], float]:
            def run() -> float:
                c_module.attach_thread()
                return fn()
            return run

        def py_fresh_loop() -> float:
            add, one = torch.add, 1
            start = time.perf_counter_ns()
            for _ in range(PY_OPS):
                add(x, one)
            return (time.perf_counter_ns() - start) / PY_OPS

        def record_function(on: bool) -> Callable[[], float]:
            def run() -> float:
                c_module._bench_record_function_hook(on)
                try:
                    return cpp_loop()
                finally:
                    c_module._bench_record_function_hook(False)
            return run

        for warm in (cpp_loop, cpp_fallback_loop, py_fresh_loop):  # first-call costs out of the rounds
            warm()
        base, hooked = paired(detached(cpp_loop), attached(cpp_loop))
        boxed_base, boxed_hooked = paired(detached(cpp_fallback_loop), attached(cpp_fallback_loop))
        fresh_base, fresh_hooked = paired(detached(py_fresh_loop), attached(py_fresh_loop))
        c_module.detach_thread()
        rf_base, rf_hooked = paired(record_function(False), record_function(True))
        c_module.attach_thread()
        assert acb.status().lease_state == "holding", "the lease was lost mid-benchmark; figures are not lease-held"
        acb.disable()
    finally:
        broker.close()
    figure("tiny_op_baseline_ns_per_op", base, "ns")
    figure("hook_ns_per_op", hooked - base, "ns")
    figure("tiny_op_boxed_fallback_baseline_ns_per_op", boxed_base, "ns")
    figure("hook_ns_per_op_boxed_fallback", boxed_hooked - boxed_base, "ns")
    figure("tiny_op_fresh_output_baseline_ns_per_op", fresh_base, "ns")
    figure("hook_ns_per_op_fresh_output", fresh_hooked - fresh_base, "ns")
    figure("hook_record_function_ns_per_op", rf_hooked - rf_base, "ns")


if __name__ == "__main__":
    main()
