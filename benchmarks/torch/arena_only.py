"""Runs a torch job on acb's arena without acb's op hook and lease traffic:
the baseline of overhead_bench.py.

    python arena_only.py JOB.py [JOB ARGS...]    (with acb enabled: ACB_ENABLE=1 and a broker)

acb is enabled as usual (the arena is installed as the emulated device's
allocator), then this thread enters one region for the whole job, which
takes the lease once and raises the thread's operator depth, so that every
allocation comes from the arena as it does inside a hooked operator, and the
thread is detached from the op hook (acb._C.detach_thread()), so no operator
goes through it: no gate, no dirty marking, no lease check per operator. The
job then runs as `python JOB.py ARGS` would. Only for jobs with no other
threads issuing operators and no other client on the broker: nothing here
could yield the lease before the job ends.
"""

from __future__ import annotations

import os
import runpy
import sys

import torch  # noqa: F401  (auto-activation enables acb once torch is imported)

import acb
from acb import _gating


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: arena_only.py JOB.py [ARGS...]")
    acb.enable()
    c = _gating.c_module
    if c is None:
        raise SystemExit("arena_only: acb is not enabled (set ACB_ENABLE=1 and ACB_BROKER)")
    job, sys.argv = sys.argv[1], sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(job)))  # as `python JOB.py` has it
    c.region_enter()
    c.detach_thread()
    try:
        runpy.run_path(job, run_name="__main__")
    finally:
        c.attach_thread()
        c.region_exit()


if __name__ == "__main__":
    main()
