"""acb._broker_process: the broker's first line is read in one place, and a
broker that does not start is reported with what it printed instead."""

import sys

import pytest

from acb import _broker_process
from acb._broker_process import BrokerStartError, Listening, parse_listening


@pytest.mark.parametrize("line, expected", [
    ("acb-broker listening on 127.0.0.1:41234 metrics 127.0.0.1:41235",
     Listening("127.0.0.1", 41234, 41235)),
    ("acb-broker listening on ::1:7000 metrics ::1:7001", Listening("::1", 7000, 7001)),
    ("acb-broker listening on [::1]:7000 metrics [::1]:7001", Listening("::1", 7000, 7001)),
])
def test_the_listening_line_is_parsed(line, expected):
    assert parse_listening(line) == expected


def test_an_ipv6_address_is_formatted_as_acb_broker_takes_it():
    assert Listening("::1", 7000, 7001).address == "[::1]:7000"
    assert Listening("127.0.0.1", 7000, 7001).address == "127.0.0.1:7000"


@pytest.mark.parametrize("line", [
    "", "acb-broker: error: port in use", "acb-broker listening on 127.0.0.1:x metrics 127.0.0.1:1",
    "acb-broker listening on 127.0.0.1:1", "acb-broker listening on 127.0.0.1 metrics 127.0.0.1:2",
])
def test_other_lines_are_not_taken_for_it(line):
    assert parse_listening(line) is None


def test_a_command_that_prints_something_else_is_reported_and_ended(tmp_path):
    script = "import sys, time; print('acb-broker: error: no device', flush=True); time.sleep(60)"
    with open(tmp_path / "stderr", "wb") as stderr:
        with pytest.raises(BrokerStartError, match="no device"):
            _broker_process.start([sys.executable, "-c", script], {}, stderr, timeout_s=20)


def test_a_command_that_listens_is_started_and_stopped(tmp_path):
    script = ("import signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
              "print('acb-broker listening on 127.0.0.1:5 metrics 127.0.0.1:6', flush=True)\n"
              "time.sleep(60)\n")
    with open(tmp_path / "stderr", "wb") as stderr:
        proc, listening = _broker_process.start([sys.executable, "-c", script], {}, stderr, timeout_s=20)
    assert listening == Listening("127.0.0.1", 5, 6)
    assert _broker_process.stop(proc, timeout_s=20) == 0
    assert proc.stdout.closed
