"""Issues one operator from a threading.Thread (not the thread that called
acb.enable()): prints {"event": "ready"} just before it, then one JSON line
with when it finished, whether the thread was attached to acb's hook, and
acb.status()."""

import json
import threading
import time

import torch

import acb


def main() -> None:
    # Made before enable(): not in the arena, so only the op hook (not the
    # allocator) can hold back the in-place op below.
    y = torch.full((1 << 16,), 3.0)
    acb.enable(priority="training")
    from acb import _C

    out = {}

    def worker() -> None:
        out["attached"] = _C.thread_attached()
        print(json.dumps({"event": "ready", "t": time.monotonic()}), flush=True)
        y.mul_(2)
        out["t_done"] = time.monotonic()
        out["sum"] = float(y.sum())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    out["status"] = acb.status().as_dict()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
