"""The `acb` command against a real broker: status, top, trace, drain,
set-priority, options, the broker pass-through, and its one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from _cli_helpers import free_port, package_env, run_cli
from conftest import read_line, wait_for


@pytest.fixture
def cli(broker, broker_bin):
    env = package_env(broker_bin, {"ACB_TOKEN_DIR": str(broker.token_dir)})
    address = f"{broker.host}:{broker.port}"

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = run_cli([*args, "--broker", address], env)
        if check:
            assert result.returncode == 0, result.stderr
            assert "Traceback" not in result.stderr
        return result

    return run


def test_status_lists_devices_holders_and_clients(broker, cli):
    holder = broker.connect(name="trainer", need_bytes=3 << 30)
    holder.send({"op": "acquire"})
    grant = wait_for(holder, "grant")
    holder.send({"op": "residency", "resident_bytes": 2 << 30})
    waiter = broker.connect(name="server", priority="inference", device=grant["device"])
    waiter.send({"op": "acquire"})

    status = json.loads(cli("status", "--json").stdout)
    device = next(d for d in status["devices"] if d["device"] == grant["device"])
    by_id = {c["client_id"]: c for c in status["clients"]}
    assert by_id[device["holder"]]["name"] == "trainer"
    assert device["resident_bytes"] >= 2 << 30
    assert {c["name"] for c in status["clients"]} == {"trainer", "server"}  # not the command's own connection

    text = cli("status").stdout
    assert f"trainer #{holder.welcome['client_id']}" in text
    assert "2 GiB" in text and "3 GiB" in text  # sizes in units a person reads
    assert "waiting" in text and "inference" in text  # the server queues behind (and revokes) the trainer
    holder.close()
    waiter.close()


def test_top_refreshes_the_given_number_of_times(cli):
    result = cli("top", "--iterations", "3", "--interval", "0.05", "--json")
    snapshots = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(snapshots) == 3
    assert all("devices" in s for s in snapshots)


def test_trace_writes_one_slice_per_lease_and_a_track_per_device(broker, cli, tmp_path):
    conn = broker.connect(name="job-a")
    for _ in range(2):
        conn.send({"op": "acquire"})
        grant = wait_for(conn, "grant")
        conn.send({"op": "release"})
    conn.request({"op": "status"})  # the releases were processed before this reply
    out = tmp_path / "trace.json"
    result = cli("trace", "-o", str(out))
    assert "wrote 2 leases" in result.stdout
    events = json.loads(out.read_text())["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    assert len(slices) == 2
    assert all(e["name"] == "job-a" and e["pid"] == grant["device"] and e["dur"] >= 0 for e in slices)
    assert slices[0]["ts"] + slices[0]["dur"] <= slices[1]["ts"]
    names = [e for e in events if e["ph"] == "M" and e["name"] == "process_name"]
    assert [e["pid"] for e in names] == [grant["device"]]
    conn.close()


def test_set_priority_then_drain_by_name(broker, cli):
    conn = broker.connect(name="batchy")
    cli("set-priority", str(conn.welcome["client_id"]), "batch")
    clients = json.loads(cli("status", "--json").stdout)["clients"]
    assert next(c for c in clients if c["name"] == "batchy")["priority"] == "batch"

    device = json.loads(cli("status", "--json").stdout)["devices"][0]
    assert device["draining"] is False
    cli("drain", device["name"])
    # status still works while every device drains (it looks as admin, not as a job)
    assert json.loads(cli("status", "--json").stdout)["devices"][0]["draining"] is True
    conn.close()


def test_refused_admin_requests_are_one_line_errors(cli):
    result = cli("drain", "no-such-device", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("acb: no device named 'no-such-device'")
    result = cli("set-priority", "99999", "batch", check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_no_broker_is_a_clear_one_line_error(broker_bin, tmp_path):
    port = free_port()
    env = package_env(broker_bin, {"ACB_TOKEN_DIR": str(tmp_path)})
    result = run_cli(["status", "--broker", f"127.0.0.1:{port}"], env)
    assert result.returncode == 1
    assert result.stderr == f"acb: no acb broker at 127.0.0.1:{port}; start one with `acb broker`\n"
    result = run_cli(["status", "--broker", "nonsense"], package_env(broker_bin))
    assert result.returncode == 1 and "is not HOST:PORT" in result.stderr and "Traceback" not in result.stderr


def test_options_lists_the_shared_table(broker_bin):
    result = run_cli(["options", "--json"], package_env(broker_bin, {"ACB_BROKER": "10.1.2.3:4444"}))
    assert result.returncode == 0, result.stderr
    table = {o["env"]: o for o in json.loads(result.stdout)}
    assert table["ACB_BROKER"]["default"] == "127.0.0.1:43210"
    assert table["ACB_BROKER"]["value"] == "10.1.2.3:4444"


def test_acb_broker_runs_the_broker_in_the_foreground(broker_bin, tmp_path):
    env = package_env(broker_bin, {"ACB_TOKEN_DIR": str(tmp_path / "tokens")})
    proc = subprocess.Popen([sys.executable, "-m", "acb.cli", "broker", "--port", "0", "--metrics-port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = read_line(proc.stdout, 20)
        assert line is not None and line.startswith("acb-broker listening on 127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
        proc.stderr.close()
