"""torch.compile under acb (python/acb/_compile.py): compiled calls hold the
device for their whole duration and mark what they wrote, so results stay
bit-identical to a run without acb while processes evict each other; an
inference graph that only reads its weights leaves them clean.

The jobs (tests/python/torch_jobs/compile_job.py) keep tensors that only
compiled kernels write in 2 MiB segments of their own, so a write the arena
was not told about is lost at the next offload instead of riding along with a
neighbour an eager operator marked. One Inductor cache directory for the
module: every job after the first of a configuration loads its kernels
instead of compiling them with g++.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402
from driven import Driven, driven_env  # noqa: E402

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow  # each job compiles on its first step (tens of seconds on a 2-core machine)

# A compile_job keeps about 20 MiB resident, the hog (driven_job.py: a 5 MiB
# model plus what it grows) nearly the whole device: each hog command evicts
# the compile job entirely.
CAPACITY_MIB = 48
HOG_GROW_MIB = 40
COMPILE_TIMEOUT_S = 300.0  # the first call compiles (dynamo, AOTAutograd, Inductor, g++)


@pytest.fixture(scope="module")
def inductor_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("inductor-cache"))


def _job(*args: str) -> list:
    return h.job("compile_job.py", *args)


def _solo(root: Path, cache: str, args: tuple, steps: int, tmp_path: Path):
    """Starts the same job without acb: `steps` steps, then its results in solo.pt."""
    out = tmp_path / "solo.pt"
    log = tmp_path / "solo.log"
    argv = _job(*args, "--steps", str(steps), "--cpu-ms", "0", "--out", str(out))
    return h.start([sys.executable, *argv], {**h.base_env(root), "TORCHINDUCTOR_CACHE_DIR": cache}, log), log, out


# The compiled optimizer step is the lock-step test below.
MATRIX = {
    "model": ("--compile", "model"),
    "train-step": ("--compile", "trainstep"),
    "train-step-max-autotune": ("--compile", "trainstep", "--mode", "max-autotune-no-cudagraphs"),
    "train-step-dynamic": ("--compile", "trainstep", "--dynamic"),
    "inference-no-grad": ("--compile", "infer"),
}


@pytest.mark.parametrize("args", MATRIX.values(), ids=MATRIX.keys())
def test_compiled_job_evicted_between_steps_matches_solo(broker_factory, tmp_path, inductor_cache, args):
    """Each step after the first runs right after the job was evicted and
    restored: the compiled kernels' in-place writes (parameters, momentum,
    BatchNorm statistics, the queue buffer) must reach the next offload."""
    root = h.require_package()
    steps = 3
    solo, solo_log, solo_out = _solo(root, inductor_cache, args, steps, tmp_path)
    env = {**driven_env(broker_factory, f"{CAPACITY_MIB}MiB", "--quantum-ms", "20"),
           "TORCHINDUCTOR_CACHE_DIR": inductor_cache}
    job = Driven(env, argv=_job(*args, "--acb", "--driven"), timeout_s=COMPILE_TIMEOUT_S, log=tmp_path / "job.log")
    hog = None
    try:
        job.do("step")                      # compiles; then the job's memory is all written once
        hog = Driven(env)
        hog.do(f"grow {HOG_GROW_MIB}")      # evicts the job: everything copied out
        for _ in range(steps - 1):
            job.do("step")                  # restored, then written by compiled kernels
            hog.do("touch")                 # evicts the job: those writes must be copied out
        out = tmp_path / "acb.pt"
        s = job.do(f"save {out}")["status"]  # restored from the last offload's backup
        print(json.dumps(s))
        assert s["offloads"] >= steps and s["restored_bytes"] > 0, s
        h.finish(solo, solo_log, COMPILE_TIMEOUT_S)
        h.assert_same_tensors(torch.load(solo_out), torch.load(out), " ".join(args))
    finally:
        job.close()
        if hog is not None:
            hog.close()
        if solo.poll() is None:
            solo.kill()
            solo.wait()


def test_compiled_inference_keeps_weights_clean(broker_factory, tmp_path, inductor_cache):
    """An inference graph reads its weights and writes only activations: after
    the first offload copied them, later offloads skip them as clean."""
    h.require_package()
    env = {**driven_env(broker_factory, f"{CAPACITY_MIB}MiB", "--quantum-ms", "20"),
           "TORCHINDUCTOR_CACHE_DIR": inductor_cache}
    server = Driven(env, argv=_job("--compile", "infer", "--acb", "--driven"), timeout_s=COMPILE_TIMEOUT_S,
                    log=tmp_path / "server.log")
    trainer = None
    try:
        first = server.do("step")["result"]
        trainer = Driven(env)
        trainer.do(f"grow {HOG_GROW_MIB}")   # evicts the server: weights copied out once
        server.do("step")                    # restored; the compiled graph only reads them
        trainer.do("touch")                  # writes its own memory, evicts the server again
        reply = server.do("step")
        s = reply["status"]
        print(json.dumps(s))
        assert s["offloads"] >= 2 and s["restored_bytes"] > 0, s
        # The middle layer's weight and the queue buffer (4 MiB each) were not copied again.
        assert s["skipped_clean_bytes"] >= 8 << 20, s
        assert reply["result"] != first  # a new batch; the sums are compared bit for bit in the matrix
    finally:
        server.close()
        if trainer is not None:
            trainer.close()


def test_two_compiled_optimizer_loops_share_a_device_bit_identical_to_solo(broker_factory, tmp_path,
                                                                          inductor_cache):
    """What was seen: two copies of a loop with `@torch.compile def opt_step():
    opt.step()` on a device that holds one working set diverged (one lost its
    compiled updates at an offload, the other was evicted under a kernel)."""
    root = h.require_package()
    steps = 8
    args = ("--compile", "optstep", "--cpu-ms", "20")
    solo = _solo(root, inductor_cache, args, steps, tmp_path)
    device = h.device_spec("32MiB")  # one job's working set (about 20 MiB), not two
    broker = broker_factory("--device", device, "--aging-ms", "300", "--quantum-ms", "100",
                            "--quantum-deadline-ms", "1000")
    env = {**h.acb_env(root, broker, device), "TORCHINDUCTOR_CACHE_DIR": inductor_cache}
    barrier, rounds = tmp_path / "barrier", tmp_path / "rounds"
    barrier.mkdir()
    rounds.mkdir()
    procs = []
    for name in ("a", "b"):
        argv = _job(*args, "--steps", str(steps), "--out", str(tmp_path / f"{name}.pt"),
                    "--status", str(tmp_path / f"{name}.json"), "--barrier", str(barrier),
                    "--lockstep", str(rounds), "--lockstep-jobs", "2")
        log = tmp_path / f"{name}.log"
        procs.append((h.start(h.acb_run("training", argv), {**env, "ACB_NAME": name}, log), log))
    h.release_barrier(barrier, 2, procs)
    for proc, log in procs:
        h.finish(proc, log, COMPILE_TIMEOUT_S)
    h.finish(solo[0], solo[1], COMPILE_TIMEOUT_S)
    expected = torch.load(solo[2])
    for name in ("a", "b"):
        s = h.load_status(tmp_path / f"{name}.json")["acb"]
        print(name, json.dumps(s))
        assert s["enabled"] and s["offloads"] >= 1 and s["restored_bytes"] > 0, s
        h.assert_same_tensors(expected, torch.load(tmp_path / f"{name}.pt"), name)


HOLD_PROBE = """
import json, torch, acb
from torch._inductor.output_code import CompiledFxGraph
acb.enable()
depths = []

@torch._dynamo.disable
def probe():
    depths.append(acb._C.op_depth())

@torch.compile(backend="eager")  # dynamo only: no Inductor compile, the probe runs at a graph break
def f(x):
    y = x + 1
    probe()
    return y * 2

f(torch.ones(4))  # compiles
f(torch.ones(4))
probe()
wrapped = [hasattr(fn, "__wrapped__") for fn in (CompiledFxGraph.__call__, torch.random.get_rng_state,
                                                 torch.set_rng_state)]
acb.disable()
restored = [not hasattr(fn, "__wrapped__") for fn in (CompiledFxGraph.__call__, torch.random.get_rng_state,
                                                      torch.set_rng_state)]
print(json.dumps({"depths": depths, "wrapped": wrapped, "restored": restored}))
"""


def test_compiled_call_holds_the_device_across_graph_breaks(broker_factory):
    """The whole compiled call is one hold: eager code between its graphs runs
    nested (depth 1), not as operators that may each lose the device; after
    the call, and after disable(), nothing of it remains."""
    env = driven_env(broker_factory, "32MiB")
    out = subprocess.run([sys.executable, "-c", HOLD_PROBE], env=env, capture_output=True, timeout=COMPILE_TIMEOUT_S)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    result = json.loads(out.stdout.decode().splitlines()[-1])
    assert result["depths"] == [1, 1, 0], result  # first call (compiling), second call, outside
    assert all(result["wrapped"]) and all(result["restored"]), result
