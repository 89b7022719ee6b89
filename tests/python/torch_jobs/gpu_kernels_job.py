"""A job whose GPU work bypasses single dispatcher ops: a function compiled
with mode="reduce-overhead" and a Triton kernel launched directly, in steps
with CPU pauses. Runs the same with and without acb (ACB_ENABLE decides);
writes its final tensors to OUT (torch.save) and, under acb, acb.status() to
OUT.status.json. Needs a CUDA GPU and Triton (the gpu-marked tests)."""

import json
import sys
import time

import torch
import triton
import triton.language as tl

import acb


@triton.jit
def scale_add(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(y_ptr + offsets, y * 0.5 + x, mask=mask)


def main() -> None:
    out, steps, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    n = (mib << 20) // 4 // 2
    x = torch.rand(n, device="cuda")
    y = torch.zeros(n, device="cuda")

    @torch.compile(mode="reduce-overhead")
    def step(a):
        return (a * 1.0001).sin_().add_(1.0)

    for _ in range(steps):
        x = step(x).clone()
        scale_add[(triton.cdiv(n, 1024),)](x, y, n, BLOCK=1024)
        time.sleep(0.02)  # a CPU phase: the device may go to the other job
    torch.cuda.synchronize()
    torch.save({"x": x.cpu(), "y": y.cpu()}, out)
    if acb.is_enabled():
        with open(out + ".status.json", "w") as f:
            json.dump(acb.status().as_dict(), f)


if __name__ == "__main__":
    main()
