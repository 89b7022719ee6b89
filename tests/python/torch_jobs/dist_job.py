"""One rank of a two-rank gloo job under acb, driven line by line from stdin
(tests/python/torch_jobs/driven.py). argv: priority rank world_size
init_file. Commands (one per line); after each it prints one JSON line with
acb.status():
  init        joins the process group (file:// rendezvous at init_file; both
              ranks must be sent it before either reply is read) and makes x,
              8 MiB of fixed-seed randn (the seed is the rank) in the arena
  allreduce   dist.all_reduce(x) (sum), synchronous
  start       work = dist.all_reduce(x, async_op=True); replies at once
  start_cxx   the same through the unwrapped all_reduce, whose c10d operator only
              the op hook sees, as for a collective issued from C++
              (DistributedDataParallel's reducer); replies at once
  wait        work.wait()
  start_functional  the functional in-place all_reduce of x (_c10d_functional.all_reduce_, as
              compiled code issues it: no Work, a later wait_tensor); prints an "entering"
              event with the device held just before the call, then replies when it returns
  wait_functional   wait_tensor(x)
  digest      result: sha256 of x's bytes
  status      nothing (the reply carries acb.status())
  quit        exit
"""

import hashlib
import json
import sys

import torch
import torch.distributed as dist

import acb

ELEMENTS = 2 << 20  # 8 MiB of float32


def initial(rank: int) -> torch.Tensor:
    """The rank's x before any collective (the test computes the expected results from it too)."""
    return torch.randn(ELEMENTS, generator=torch.Generator().manual_seed(rank))


def digest(t: torch.Tensor) -> str:
    from acb import _gating

    with _gating.held():  # numpy() reads without an operator: hold the device (restored), mark nothing
        return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def main() -> None:
    priority, rank, world_size, init_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    acb.enable(priority=priority)
    x = None
    work = None
    result = ""
    print(json.dumps({"event": "ready", "status": acb.status().as_dict()}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command:
            continue
        if command[0] == "init":
            dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
            x = initial(rank)
        elif command[0] == "allreduce":
            dist.all_reduce(x)
        elif command[0] == "start":
            work = dist.all_reduce(x, async_op=True)
        elif command[0] == "start_cxx":
            work = dist.all_reduce.__acb_wrapped__(x, async_op=True)
        elif command[0] == "wait":
            work.wait()
        elif command[0] == "start_functional":
            from acb import _gating

            # The device held from before "entering" into the op: a revoke
            # that follows "entering" finds this rank at the op or in it.
            with _gating.held():
                print(json.dumps({"event": "entering"}), flush=True)
                torch.ops._c10d_functional.all_reduce_(x, "sum", dist.group.WORLD.group_name)
        elif command[0] == "wait_functional":
            torch.ops._c10d_functional.wait_tensor(x)
        elif command[0] == "digest":
            result = digest(x)
        elif command[0] == "status":
            pass
        elif command[0] == "quit":
            break
        print(json.dumps({"event": command[0], "result": result, "status": acb.status().as_dict()}), flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
