"""Where acb cannot attach the threads that ran before enable(), it says so:
once on stderr, and in acb.status().safe_mode_reason (through
acb._C.enter_safe_mode where the extension has one)."""

from __future__ import annotations

from acb import _api, _threads


class FakeC:
    def __init__(self, attached: int, others: int) -> None:
        self.attached = attached
        self.others = others

    def attach_existing_threads(self) -> int:
        return self.attached

    def other_python_threads(self) -> int:
        return self.others


def test_attached_or_alone_is_not_safe_mode():
    assert _threads.attach_existing(FakeC(attached=3, others=3)) == ""
    assert _threads.attach_existing(FakeC(attached=-1, others=0)) == ""


def test_threads_that_cannot_be_attached_give_a_reason():
    reason = _threads.attach_existing(FakeC(attached=-1, others=2))
    assert "2 Python thread(s)" in reason and "not gated" in reason


def test_safe_mode_is_said_once_and_kept_for_status(monkeypatch, capsys):
    monkeypatch.setattr(_api, "_safe_mode_reason", "")
    _api.enter_safe_mode(object(), "first reason")
    _api.enter_safe_mode(object(), "second reason")
    assert capsys.readouterr().err == "acb: safe mode: first reason\n"
    assert _api._safe_mode_reason == "first reason"


def test_safe_mode_goes_to_the_extension_where_it_has_it(monkeypatch, capsys):
    monkeypatch.setattr(_api, "_safe_mode_reason", "")
    seen = []

    class WithSafeMode:
        def enter_safe_mode(self, reason: str) -> None:
            seen.append(reason)

    _api.enter_safe_mode(WithSafeMode(), "why")
    assert seen == ["why"] and _api._safe_mode_reason == ""
    assert capsys.readouterr().err == ""
