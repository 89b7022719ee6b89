"""gloo collectives under acb: two ranks, each on its own emulated device,
and a hog on rank 0's device that evicts it between collectives. The
collective's writes land on gloo's threads, after the operator returned: they
must be marked (or the next offload skips them as clean) and, with
async_op=True, the device must stay held until the work is done (or the
offload makes x inaccessible under gloo's feet). Results are compared bit for
bit with the same sums computed without acb."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402
from conftest import read_line  # noqa: E402
from driven import Driven  # noqa: E402

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

REVOKE_TIMEOUT_S = 30.0


def expected_digests():
    """sha256 of x after 1 to 5 all-reduces (sum over 2 ranks), without acb."""
    import dist_job

    x = dist_job.initial(0) + dist_job.initial(1)
    out = []
    for _ in range(5):
        out.append(hashlib.sha256(x.numpy().tobytes()).hexdigest())
        x = x + x
    return out


def wait_for_revoke(rank: Driven, revokes_before: int) -> None:
    """Bounded: until the rank has been asked to give its device back."""
    import time

    deadline = time.monotonic() + REVOKE_TIMEOUT_S
    while rank.do("status")["status"]["revokes"] <= revokes_before:
        assert time.monotonic() < deadline, "the hog's request never reached rank 0 as a revoke"
        time.sleep(0.02)  # polling the rank's own status


def wait_for_broker_revoke(broker, pid: int) -> None:
    """Bounded: until the broker has asked the client with this pid for its device
    (the client itself is busy in an operator and cannot be asked)."""
    import time

    deadline = time.monotonic() + REVOKE_TIMEOUT_S
    with broker.admin() as admin:
        while True:
            clients = admin.request({"op": "status"})["clients"]
            if any(c["pid"] == pid and c["state"] == "revoked" for c in clients):
                return
            assert time.monotonic() < deadline, f"the hog's request never reached rank 0 as a revoke: {clients}"
            time.sleep(0.02)  # polling the broker's status


def test_gloo_all_reduce_survives_offloads_and_holds_the_device_while_async(broker_factory, tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    root = h.require_package()
    devices = [h.device_spec("32MiB"), h.device_spec("32MiB")]
    broker = broker_factory("--device", devices[0], "--device", devices[1], "--quantum-ms", "20")
    envs = [h.acb_env(root, broker, devices[r], ACB_ENABLE="0", ACB_DEVICE=str(r), GLOO_SOCKET_IFNAME="lo")
            for r in range(2)]
    init_file = tmp_path / "rendezvous"
    ranks = []
    hog = None
    try:
        ranks = [Driven(envs[r], "training", str(r), "2", str(init_file), job="dist_job.py") for r in range(2)]
        for rank in ranks:
            rank.send("init")
        for rank in ranks:
            rank.reply("init")
        want = expected_digests()

        # Synchronous: x is written by gloo, not by an operator that says so.
        for rank in ranks:
            rank.send("allreduce")
        for rank in ranks:
            rank.reply("allreduce")
        hog = Driven(envs[0], "training")
        hog.do("grow 24")                         # evicts rank 0: x copied out, its backup current
        for rank in ranks:
            rank.send("allreduce")                # rank 0 restored; gloo writes x
        for rank in ranks:
            rank.reply("allreduce")
        hog.do("touch")                           # evicts rank 0 again: x must be copied, not skipped
        assert [rank.do("digest")["result"] for rank in ranks] == [want[1], want[1]]

        # async_op=True: rank 0's work waits for rank 1, which has not started.
        ranks[0].do("start")
        revokes = ranks[0].do("status")["status"]["revokes"]
        hog.send("touch")                         # asks for rank 0's device
        wait_for_revoke(ranks[0], revokes)
        # The work can still write x: rank 0 must not give the device away yet.
        assert read_line(hog.proc.stdout, 0.5) is None, "rank 0 let its device go under a pending collective"
        ranks[1].do("start")
        ranks[1].do("wait")
        ranks[0].do("wait")
        hog.reply("touch")                        # served once the work completed
        assert [rank.do("digest")["result"] for rank in ranks] == [want[2], want[2]]

        # The same issued below torch.distributed's Python functions, as C++
        # callers do (DistributedDataParallel's reducer): only the op hook sees
        # its c10d operator and must hold the device for its Work.
        ranks[0].do("start_cxx")
        revokes = ranks[0].do("status")["status"]["revokes"]
        hog.send("touch")
        wait_for_revoke(ranks[0], revokes)
        assert read_line(hog.proc.stdout, 0.5) is None, "rank 0 let its device go under a pending C++ collective"
        ranks[1].do("start_cxx")
        ranks[1].do("wait")
        ranks[0].do("wait")
        hog.reply("touch")
        assert [rank.do("digest")["result"] for rank in ranks] == [want[3], want[3]]

        # A functional collective (DTensor's, compiled code's) returns no Work;
        # gloo writes its output until wait_tensor. On the emulated device the
        # op hook waits inside the op: rank 0 stays in it, holding its device,
        # until rank 1 joins, whoever asks for the device meanwhile.
        ranks[0].send("start_functional")
        ranks[0].reply("entering")
        hog.send("touch")
        wait_for_broker_revoke(broker, ranks[0].proc.pid)
        # (the share revoke lets an idle rank 0 go within about a second: watch longer than that)
        assert read_line(hog.proc.stdout, 2.0) is None, "rank 0 let its device go under a functional collective"
        ranks[1].send("start_functional")
        ranks[1].reply("entering")
        for rank in ranks:
            rank.reply("start_functional")
        for rank in ranks:
            rank.do("wait_functional")
        hog.reply("touch")
        assert [rank.do("digest")["result"] for rank in ranks] == [want[4], want[4]]
        s0 = ranks[0].do("status")["status"]
        assert s0["offloads"] >= 3 and s0["restored_bytes"] > 0 and s0["offload_copied_bytes"] > 0, s0
    finally:
        for proc in [*ranks, hog]:
            if proc is not None:
                proc.close()
