"""The embedded broker: `import acb` starts nothing; ensure_broker() starts one
detached broker when none answers, two racing processes end up with the same
one, and it exits by itself once idle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from _cli_helpers import answers, free_port, package_env, pid_alive, wait_until

ENSURE = "from acb._broker import ensure_broker; print(json.dumps(ensure_broker()), flush=True)"


@pytest.fixture
def embedded(broker_bin, tmp_path):
    """An environment whose configured broker address is a free port, with a private token dir.
    Any broker started there is killed at teardown."""
    port = free_port()
    token_dir = tmp_path / "tokens"
    env = package_env(broker_bin, {"ACB_BROKER": f"127.0.0.1:{port}", "ACB_TOKEN_DIR": str(token_dir),
                                   "ACB_EMBEDDED_IDLE_EXIT_S": "2"})
    state = {"env": env, "port": port, "dir": token_dir}
    yield state
    port_file = token_dir / f"broker-{port}.json"
    if port_file.exists():
        pid = json.loads(port_file.read_text())["pid"]
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)


def test_import_acb_starts_nothing(embedded):
    code = "import acb, acb.cli, acb._broker, acb.options, acb.demo"
    result = subprocess.run([sys.executable, "-c", code], env=embedded["env"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert not answers(embedded["port"])
    assert not (embedded["dir"] / "broker.log").exists()


def test_ensure_broker_starts_a_detached_broker_that_exits_when_idle(embedded):
    result = subprocess.run([sys.executable, "-c", "import json; " + ENSURE], env=embedded["env"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["127.0.0.1", embedded["port"]]
    # The broker outlived the process that started it, and answers a real client.
    info = json.loads((embedded["dir"] / f"broker-{embedded['port']}.json").read_text())
    assert pid_alive(info["pid"])
    from acb._wire import Connection
    token = (embedded["dir"] / "token").read_text().strip()
    with Connection("127.0.0.1", embedded["port"], token=token, name="probe") as conn:
        assert conn.welcome["op"] == "welcome"
    log = (embedded["dir"] / "broker.log").read_text()
    assert "listening on" in log
    # Started without --device, it did not probe this machine's GPUs (package_env).
    assert "no --device given and no GPU found (dlopen(/nonexistent/acb-tests-do-not-probe/" in log
    # Without clients it leaves by itself (ACB_EMBEDDED_IDLE_EXIT_S=2). Only the pid is
    # watched: a probing connection would count as a client and keep it alive.
    assert wait_until(lambda: not pid_alive(info["pid"]), 20)
    assert "exiting (--idle-exit-s)" in (embedded["dir"] / "broker.log").read_text()


def test_two_processes_starting_at_once_get_one_broker(embedded):
    # Both wait on stdin, so that they call ensure_broker() at the same moment.
    code = "import json, sys; sys.stdin.readline(); " + ENSURE
    procs = [subprocess.Popen([sys.executable, "-c", code], env=embedded["env"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        p.stdin.write(b"go\n")
        p.stdin.flush()
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
        outputs.append(json.loads(out))
    assert outputs == [["127.0.0.1", embedded["port"]]] * 2
    log = (embedded["dir"] / "broker.log").read_text()
    assert log.count("listening on") == 1, log  # one broker started, the other process used it


def test_an_existing_broker_is_used_not_replaced(broker, broker_bin, tmp_path):
    env = package_env(broker_bin, {"ACB_BROKER": f"{broker.host}:{broker.port}", "ACB_TOKEN_DIR": str(tmp_path)})
    result = subprocess.run([sys.executable, "-c", "import json; " + ENSURE], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [broker.host, broker.port]
    assert not (tmp_path / "broker.log").exists()


def test_a_remote_address_is_never_started_here(embedded):
    code = ("from acb._broker import ensure_broker\n"
            "from acb._wire import BrokerError\n"
            "try:\n    ensure_broker('192.0.2.1:43210')\nexcept BrokerError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], env=embedded["env"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert "no acb broker at 192.0.2.1:43210" in result.stdout
