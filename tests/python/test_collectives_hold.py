"""acb._collectives without a process group: a wrapped collective that
returns a pending Work keeps one unit of the gate held until the work is
done, marks its tensors before letting go, and lets go exactly once: through
the Work's future, or a watcher thread where the Work has none (waiting in
the call instead would deadlock an irecv posted before its isend)."""

from __future__ import annotations

import threading
from typing import List

import pytest

torch = pytest.importorskip("torch")

from acb import _collectives, _gating  # noqa: E402

WAIT_S = 10.0


class FakeC:
    """The parts of acb._C the wrapper uses, recording the order of events."""

    def __init__(self) -> None:
        self.events: List[str] = []
        self.released = threading.Event()
        self.depth = 0

    def region_enter(self) -> None:
        self.depth += 1
        self.events.append("enter")

    def region_exit(self, mark_all: bool = False) -> None:
        self.depth -= 1
        self.events.append("exit")

    def hold_gate(self) -> None:
        assert self.depth > 0, "hold_gate outside held()"
        self.events.append("hold")

    def release_gate(self) -> None:
        self.events.append("release")
        self.released.set()

    def mark_tensors_written(self, tensors) -> None:
        self.events.append(f"mark{len(list(tensors))}")


class FutureWork:
    def __init__(self) -> None:
        self.future = torch.futures.Future()

    def get_future(self):
        return self.future

    def wait(self) -> bool:
        self.future.wait()
        return True


class FuturelessWork:
    def __init__(self) -> None:
        self.finished = threading.Event()

    def get_future(self):
        raise RuntimeError("Work::getFuture not implemented for this backend")

    def wait(self) -> bool:
        assert self.finished.wait(WAIT_S), "the test never finished the work"
        return True


@pytest.fixture
def fake_c(monkeypatch) -> FakeC:
    c = FakeC()
    monkeypatch.setattr(_gating, "c_module", c)
    return c


@pytest.mark.parametrize("work_type", [FutureWork, FuturelessWork])
def test_pending_work_holds_the_gate_until_done_then_marks_and_lets_go_once(fake_c, work_type):
    work = work_type()
    x = torch.zeros(4)
    start = _collectives._wrap(lambda tensor, async_op=False: work)
    assert start(x, async_op=True) is work
    # The call is over (its held() exited), the unit for the work is still held.
    assert fake_c.events == ["enter", "hold", "mark1", "exit"]
    assert not fake_c.released.is_set()
    if work_type is FutureWork:
        work.future.set_result(None)
    else:
        work.finished.set()
    assert fake_c.released.wait(WAIT_S)
    assert fake_c.events[4:] == ["mark1", "release"]  # marked before letting go, once
    work.wait()                                       # the program's own wait changes nothing
    assert fake_c.events.count("release") == 1


def test_synchronous_collective_holds_only_for_the_call(fake_c):
    x = torch.zeros(4)
    ys = [torch.zeros(2), torch.zeros(2)]
    run = _collectives._wrap(lambda output, inputs: None)
    assert run(x, inputs=ys) is None
    assert fake_c.events == ["enter", "mark3", "exit"]
