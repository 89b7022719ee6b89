"""Hook cost per operator with the lease held: a C++ loop of tiny in-place
ops (tensor.add_(1) through the dispatcher, no Python per op) timed without
acb, with acb's dispatch-key hook, and with the RecordFunction alternative,
all in this one process and run.

FIGURE hook_ns_per_op: dispatch-key hook minus baseline (the hook acb uses).
FIGURE hook_record_function_ns_per_op: RecordFunction callback (with the
inputs and outputs dirty tracking would need) minus baseline.
"""

from __future__ import annotations

import statistics

import torch

import acb
from acb import _loader
from bench_common import Broker, figure

ITERATIONS = 200_000
REPEATS = 7


def measure(c_module, x) -> float:
    return statistics.median(c_module._bench_tiny_ops_ns(x, ITERATIONS) for _ in range(REPEATS))


def main() -> None:
    torch.set_num_threads(1)
    c_module = _loader.load()
    x = torch.zeros(4)
    broker = Broker("256MiB")
    try:
        import os

        os.environ.update({k: v for k, v in broker.env().items() if k.startswith("ACB_") and k != "ACB_ENABLE"})
        base_before = measure(c_module, x)
        acb.enable()
        x.add_(1)  # takes the lease; from here on the fast path runs
        hooked = measure(c_module, x)
        assert acb.status().lease_state == "holding"
        acb.disable()
        c_module._bench_record_function_hook(True)
        record_function = measure(c_module, x)
        c_module._bench_record_function_hook(False)
        base_after = measure(c_module, x)
    finally:
        broker.close()
    base = min(base_before, base_after)
    figure("tiny_op_baseline_ns_per_op", base, "ns")
    figure("hook_ns_per_op", hooked - base, "ns")
    figure("hook_record_function_ns_per_op", record_function - base, "ns")


if __name__ == "__main__":
    main()
