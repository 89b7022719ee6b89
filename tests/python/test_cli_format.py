"""The acb command's pure parts: sizes, durations, tables, the trace conversion,
the status rendering, and the options table."""

from __future__ import annotations

import pytest

from acb import _format, _trace, options
from acb.cli import render_status


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 << 30, "3 GiB"),
                                     (80 << 30, "80 GiB"), (int(1.25 * (1 << 40)), "1.25 TiB"), (None, "-")])
def test_human_bytes(n, text):
    assert _format.human_bytes(n) == text


@pytest.mark.parametrize("us, text", [(850, "850 us"), (12_300, "12.3 ms"), (4_200_000, "4.2 s"),
                                      (185_000_000, "3m05s"), (7_260_000_000, "2h01m"), (None, "-")])
def test_human_duration(us, text):
    assert _format.human_duration_us(us) == text


def test_table_aligns_columns_and_right_aligns_numbers():
    text = _format.table(["ID", "NAME"], [[1, "a"], [123, "long-name"]], right=(0,))
    assert text.splitlines() == [" ID  NAME", "---  ---------", "  1  a", "123  long-name"]


def test_bar_is_clamped():
    assert _format.bar(0.5, 4) == "[##..]"
    assert _format.bar(2.0, 4) == "[####]"
    assert _format.bar(-1, 4) == "[....]"


SLICES = [
    {"device": 0, "client_id": 1, "name": "a", "start_us": 1000, "end_us": 3000},
    {"device": 0, "client_id": 2, "name": "b", "start_us": 3000, "end_us": 5000},
    {"device": 1, "client_id": 3, "name": "c", "start_us": 2000, "end_us": None},
]


def test_chrome_trace_has_a_slice_per_lease_and_a_track_per_device():
    trace = _trace.to_chrome_trace(SLICES, {0: "gpu0"})
    xs = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert [(e["name"], e["pid"], e["tid"], e["ts"], e["dur"]) for e in xs] == [
        ("a", 0, 1, 1000, 2000), ("b", 0, 2, 3000, 2000), ("c", 1, 3, 2000, 3000)]
    assert xs[2]["args"]["held"] is True
    tracks = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"}
    assert tracks == {0: "device 0 (gpu0)", 1: "device 1"}


def test_a_held_lease_ends_at_the_latest_time_any_slice_mentions():
    xs = [e for e in _trace.to_chrome_trace(SLICES)["traceEvents"] if e["ph"] == "X"]
    assert xs[2]["dur"] == 5000 - 2000


def test_ascii_timeline_marks_who_held_when():
    lines = _trace.ascii_timeline(SLICES[:2], width=10).splitlines()
    assert lines[0].endswith("|#####.....|")
    assert lines[1].endswith("|.....#####|")
    assert _trace.ascii_timeline([]) == "(no leases yet)"


def test_render_status_names_holders_and_queues():
    status = {"quantum_ms": 200,
              "devices": [{"device": 0, "name": "gpu0", "capacity_bytes": 16 << 30, "resident_bytes": 4 << 30,
                           "holder": 7, "queue": [8], "draining": False}],
              "clients": [{"client_id": 7, "name": "train", "pid": 11, "priority": "training", "device": 0,
                           "state": "holding", "resident_bytes": 4 << 30, "need_bytes": 6 << 30, "grants": 3,
                           "waited_us_total": 1500, "preemptions": 1},
                          {"client_id": 8, "name": "serve", "pid": 12, "priority": "inference", "device": 0,
                           "state": "waiting", "resident_bytes": 0, "need_bytes": 0, "grants": 0,
                           "waited_us_total": 0, "preemptions": 0}]}
    text = render_status(status, "127.0.0.1:1")
    assert text.splitlines()[0] == "acb broker 127.0.0.1:1: 1 device, 2 clients, quantum 200 ms"
    device_row = next(line for line in text.splitlines() if line.lstrip().startswith("0  gpu0"))
    assert "16 GiB" in device_row and "4 GiB" in device_row and "train #7" in device_row and "serve #8" in device_row
    assert "1.5 ms" in text


def test_render_status_shows_gang_ranks_only_when_there_are_some():
    client = {"client_id": 3, "name": "single", "state": "idle"}
    assert "GANG" not in render_status({"devices": [], "clients": [client]}, "127.0.0.1:1")
    ranks = [{"client_id": 4, "name": "ddp0", "state": "waiting", "gang": "run-9", "local_rank": 0},
             {"client_id": 5, "name": "ddp1", "state": "waiting", "gang": "run-9"}]
    lines = render_status({"devices": [], "clients": [client, *ranks]}, "127.0.0.1:1").splitlines()
    header = next(line for line in lines if line.lstrip().startswith("ID"))
    assert header.rstrip().endswith("GANG")
    rows = {line.split()[1]: line for line in lines if line.split()[:1] in (["3"], ["4"], ["5"])}
    assert rows["single"].rstrip().endswith("-")
    assert rows["ddp0"].rstrip().endswith("run-9 rank 0")
    assert rows["ddp1"].rstrip().endswith("run-9")


def test_render_status_says_how_many_clients_the_broker_left_out():
    clients = [{"client_id": i, "name": f"job{i}", "state": "waiting"} for i in range(1, 257)]
    status = {"devices": [], "clients": clients, "clients_total": 2000, "clients_truncated": True,
              "clients_by_state": {"waiting": 1999, "holding": 1}, "next_after": 256}
    lines = render_status(status, "127.0.0.1:1").splitlines()
    assert lines[0] == "acb broker 127.0.0.1:1: 0 devices, 2000 clients"
    assert lines[-1].startswith("1744 more clients not listed: the broker lists 256 of 2000 (1 holding, 1999 waiting)")
    assert "next_after" in lines[-1]


def test_the_commands_own_connection_is_not_counted_even_off_the_page():
    from acb.cli import _status_without_self
    status = {"clients": [{"client_id": 1, "state": "holding"}], "clients_total": 300,
              "clients_by_state": {"holding": 1, "idle": 299}}
    assert _status_without_self(status, 1)["clients_total"] == 299
    off_page = _status_without_self(status, 300)
    assert off_page["clients_total"] == 299 and off_page["clients_by_state"] == {"holding": 1, "idle": 298}
    assert len(off_page["clients"]) == 1


def test_options_environment_overrides_and_type_errors(monkeypatch):
    monkeypatch.delenv("ACB_EMBEDDED_IDLE_EXIT_S", raising=False)
    assert options.get("embedded_idle_exit_s") == 30
    monkeypatch.setenv("ACB_EMBEDDED_IDLE_EXIT_S", "5")
    assert options.get("embedded_idle_exit_s") == 5
    monkeypatch.setenv("ACB_EMBEDDED_IDLE_EXIT_S", "soon")
    with pytest.raises(options.OptionError, match="ACB_EMBEDDED_IDLE_EXIT_S='soon'"):
        options.get("embedded_idle_exit_s")
    monkeypatch.setenv("ACB_ENABLE", "yes")
    assert options.get("enable") is True
    with pytest.raises(options.OptionError, match="unknown acb option"):
        options.get("nope")
