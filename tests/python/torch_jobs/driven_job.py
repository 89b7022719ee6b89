"""A job driven line by line from stdin, for tests that need a precise order
of events between processes. Commands (one per line); after each it prints
one JSON line with acb.status():
  infer       one forward pass of a fixed-seed MLP (~5 MiB of weights)
  grow N      allocate and fill a tensor of N MiB (kept)
  subgrow N   the same, wrapped in a tensor subclass (wrapped.py: touch,
              raise and keptsum then run on its inner tensor inside
              __torch_dispatch__)
  touch       add 1 to every kept tensor (add_: an unboxed hook kernel)
  raise N     clamp every kept tensor to at least N (clamp_min_: no unboxed
              kernel, it goes through the hook's boxed fallback)
  tritonfill V  set every element of every kept tensor to V with a Triton
              kernel launch (`import triton`: the test's stand-in on machines
              without a GPU, which stores through NumPy views)
  keptsum     result: the sum of all kept tensors
  rawfill V   inside acb.region(), set every element of every kept tensor
              to V through a numpy view (no operator writes, so only the
              region's own marking can tell the arena)
  status      nothing (the reply carries acb.status())
  bn          one training-mode forward of a BatchNorm1d whose running
              statistics are 2 MiB each (segments of their own); result: the
              sum of its running_mean
  bnstats     result: the sum of the BatchNorm1d's running_mean (no op on it
              but the read)
  busy PATH   issue tiny ops back to back (no idle gap) until the file PATH
              exists (at most 120 s, then it fails); prints
              {"event": "busy-started"} once it holds the device
  thread CMD  runs CMD on a thread started before acb.enable() (argv[2]
              "prethread" starts one; it is attached by enable(), not by
              threading.setprofile)
  save PATH   torch.save(kept, PATH), outside any region
  pickle PATH write pickle.dumps(kept) to PATH, outside any region
  listsum     result: the sum of every kept element through tolist()
  deepsum     result: the sum of copy.deepcopy(kept)
  export K    keep numpy arrays of kept[0] that outlive the command: K is
              numpy (Tensor.numpy()) or dlpack (numpy.from_dlpack)
  exportwrite V  set every element of the kept arrays to V, outside any region
  exportsum   result: the sum of the kept arrays (numpy reads only)
  exportdrop  drop the kept arrays
  forkwrite   fork a child that sums the kept tensors, adds 1 to them and
              sets them to -1 through numpy; result: {"child_before": its
              first sum, "child_after": its last, "parent_after": the kept
              sum in this process after the child exited}
  quit        exit
"""

import copy
import gc
import json
import os
import pickle
import queue
import select
import sys
import threading
import time

import numpy as np
import torch

import acb
from wrapped import Wrapped


class PreEnableThread:
    """A thread that runs the functions put to it, one at a time; started before acb.enable()."""

    def __init__(self) -> None:
        self.tasks: queue.Queue = queue.Queue()
        self.done: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            task = self.tasks.get()
            try:
                task()
                self.done.put(None)
            except BaseException as e:  # reported on the command's thread
                self.done.put(e)

    def run(self, task) -> None:
        self.tasks.put(task)
        error = self.done.get(timeout=120)
        if error is not None:
            raise error


def fork_and_write(kept) -> dict:
    """See "forkwrite" above; the child reports through a pipe (bounded wait)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            before = float(sum(float(t.sum()) for t in kept))
            for t in kept:
                t.add_(1)
                t.numpy()[:] = -1.0
            after = float(sum(float(t.sum()) for t in kept))
            os.write(write_end, json.dumps({"child_before": before, "child_after": after}).encode())
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    text = b""
    deadline = time.monotonic() + 60.0
    while True:
        ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            os.kill(pid, 9)  # a child that hangs is a failure, not a hang of the test
            break
        chunk = os.read(read_end, 4096)
        if not chunk:
            break
        text += chunk
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    out = json.loads(text) if text else {"child_status": status}
    out["parent_after"] = float(sum(float(t.sum()) for t in kept))
    return out


def main() -> None:
    pre_enable = PreEnableThread() if sys.argv[2:3] == ["prethread"] else None
    acb.enable(priority=sys.argv[1] if len(sys.argv) > 1 else "training")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                                torch.nn.ReLU(), torch.nn.Linear(1024, 10)).eval()
    kept = []
    exported = []  # numpy arrays over kept[0] ("export")
    norm = None  # created by the first "bn", so other tests keep their small working set
    result = 0.0
    print(json.dumps({"event": "ready", "status": acb.status().as_dict()}), flush=True)

    def run(command) -> None:
        nonlocal norm, result, exported
        if command[0] == "thread":
            pre_enable.run(lambda: run(command[1:]))
        elif command[0] == "infer":
            with torch.no_grad():
                result = float(model(torch.ones(8, 256)).sum())
        elif command[0] == "grow":
            kept.append(torch.full((int(command[1]) << 18,), 1.0))
        elif command[0] == "subgrow":
            kept.append(Wrapped(torch.full((int(command[1]) << 18,), 1.0)))
        elif command[0] == "touch":
            for t in kept:
                t.add_(1)
        elif command[0] == "raise":
            for t in kept:
                t.clamp_min_(float(command[1]))
        elif command[0] == "rawfill":
            with acb.region():
                for t in kept:
                    t.numpy()[:] = float(command[1])
        elif command[0] == "tritonfill":
            import triton

            @triton.jit
            def fill(out, value):
                out[:] = value

            for t in kept:
                fill[(1,)](t, float(command[1]))
        elif command[0] == "status":
            pass
        elif command[0] == "keptsum":
            result = float(sum(float(t.sum()) for t in kept))
        elif command[0] == "busy":
            x = torch.zeros(16)
            x.add_(1)  # holds the device from here on
            print(json.dumps({"event": "busy-started"}), flush=True)
            stop = command[1]
            deadline = time.monotonic() + 120.0
            checked = time.monotonic()
            while True:
                x.add_(1)
                now = time.monotonic()
                if now - checked >= 0.005:  # a stat every 5 ms: still no idle gap between ops
                    checked = now
                    if os.path.exists(stop):
                        break
                    if now > deadline:
                        raise SystemExit(f"busy: {stop} did not appear within 120 s")
            result = float(x[0])
        elif command[0] == "bn":
            if norm is None:
                norm = torch.nn.BatchNorm1d(1 << 19).train()
            with torch.no_grad():
                norm(torch.arange(2 << 19, dtype=torch.float32).reshape(2, 1 << 19))
            result = float(norm.running_mean.sum())
        elif command[0] == "bnstats":
            result = float(norm.running_mean.sum())
        elif command[0] == "save":
            torch.save(kept, command[1])
        elif command[0] == "pickle":
            with open(command[1], "wb") as f:
                f.write(pickle.dumps(kept))
        elif command[0] == "listsum":
            result = float(sum(sum(t.tolist()) for t in kept))
        elif command[0] == "deepsum":
            result = float(sum(float(t.sum()) for t in copy.deepcopy(kept)))
        elif command[0] == "export":
            exported = [kept[0].numpy() if command[1] == "numpy" else np.from_dlpack(kept[0])]
            exported = [exported[0][:]]  # only a view of it is kept: the view keeps it alive
            gc.collect()
        elif command[0] == "exportwrite":
            for i in range(len(exported)):  # no loop variable left holding an array
                exported[i][:] = float(command[1])
        elif command[0] == "exportsum":
            result = float(sum(float(a.sum(dtype=np.float64)) for a in exported))
        elif command[0] == "exportdrop":
            exported = []
            gc.collect()
        elif command[0] == "forkwrite":
            result = fork_and_write(kept)

    for line in sys.stdin:
        command = line.split()
        if not command:
            continue
        if command[0] == "quit":
            break
        run(command)
        print(json.dumps({"event": command[0], "result": result, "status": acb.status().as_dict()}), flush=True)


if __name__ == "__main__":
    main()
