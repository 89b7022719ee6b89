"""Token and broker files another local user could plant (acb._private_files, csrc/common/private_files.h):
a token directory or file that is a symlink, someone else's, or open to others is an error naming the
path and the fix, in the clients (_wire.read_token), the embedded-broker launcher (_broker) and the
broker itself; nothing is read or written through a planted symlink or a predictable temporary name.

The tests of another uid's file chown to 65534 (nobody), which needs root: as another user they skip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from _cli_helpers import free_port, package_env, pid_alive, wait_until
from acb import _broker
from acb._wire import BrokerError, read_token
from conftest import read_line

OTHER_UID = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to uid 65534 needs root")
ENSURE = ("import json\nfrom acb._broker import ensure_broker\nfrom acb._wire import BrokerError\n"
          "try:\n    print(json.dumps(ensure_broker()), flush=True)\n"
          "except BrokerError as e:\n    print('BrokerError:', e, flush=True)\n    raise SystemExit(3)\n")


@pytest.fixture
def token_env(tmp_path, monkeypatch):
    """ACB_TOKEN_DIR=<tmp_path>/tokens (not created), no token in the environment."""
    directory = tmp_path / "tokens"
    monkeypatch.setenv("ACB_TOKEN_DIR", str(directory))
    monkeypatch.delenv("ACB_TOKEN", raising=False)
    monkeypatch.delenv("ACB_ADMIN_TOKEN", raising=False)
    return directory


@pytest.fixture
def embedded(broker_bin, tmp_path):
    """An environment for ensure_broker() in a subprocess: a free port, a token directory (not
    created); a broker started there is stopped at teardown."""
    port = free_port()
    directory = tmp_path / "tokens"
    env = package_env(broker_bin, {"ACB_BROKER": f"127.0.0.1:{port}", "ACB_TOKEN_DIR": str(directory),
                                   "ACB_EMBEDDED_IDLE_EXIT_S": "2"})
    yield {"env": env, "port": port, "dir": directory}
    port_file = directory / f"broker-{port}.json"
    if port_file.is_file() and not port_file.is_symlink():
        pid = json.loads(port_file.read_text())["pid"]
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    return path


def write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_private_token_file_is_read(token_env):
    write(private_dir(token_env) / "token", "abc\n", 0o600)
    assert read_token() == "abc"


def test_a_token_directory_that_is_a_symlink_is_refused(token_env, tmp_path):
    target = private_dir(tmp_path / "elsewhere")
    write(target / "token", "chosen-by-another-user\n", 0o600)
    token_env.symlink_to(target)
    with pytest.raises(BrokerError, match=f"token directory {token_env} is a symlink: remove it, or set ACB_TOKEN_DIR"):
        read_token()


@pytest.mark.parametrize("mode", [0o755, 0o777])
def test_a_token_directory_open_to_others_is_refused(token_env, mode):
    write(private_dir(token_env) / "token", "abc\n", 0o600)
    token_env.chmod(mode)
    with pytest.raises(BrokerError, match=f"{token_env} has mode {mode:04o}, so other users"):
        read_token()
    with pytest.raises(BrokerError, match=f"{token_env} has mode {mode:04o}"):
        _broker._private_dir()


@needs_root
def test_a_token_directory_owned_by_another_uid_is_refused(token_env):
    write(private_dir(token_env) / "token", "planted\n", 0o600)
    os.chown(token_env, OTHER_UID, OTHER_UID)
    with pytest.raises(BrokerError, match=f"{token_env} is owned by uid {OTHER_UID}"):
        read_token()
    with pytest.raises(BrokerError, match=f"uid {OTHER_UID}"):
        _broker._private_dir()


def test_a_token_file_that_is_a_symlink_is_not_read_through(token_env, tmp_path):
    victim = write(tmp_path / "victim", "chosen-by-another-user\n", 0o600)
    (private_dir(token_env) / "admin-token").symlink_to(victim)
    with pytest.raises(BrokerError, match=f"token file {token_env / 'admin-token'} is a symlink: remove it"):
        read_token(admin=True)


def test_a_token_file_others_can_read_is_an_error_naming_the_path_and_the_fix(token_env):
    path = write(private_dir(token_env) / "token", "abc\n", 0o644)
    with pytest.raises(BrokerError) as e:
        read_token()
    assert f"token file {path} has mode 0644" in str(e.value)
    assert "remove it (the broker makes a new one at its next start)" in str(e.value)


@needs_root
def test_a_token_file_owned_by_another_uid_is_refused(token_env):
    path = write(private_dir(token_env) / "token", "planted\n", 0o600)
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(BrokerError, match=f"{path} is owned by uid {OTHER_UID}"):
        read_token()


def test_a_token_in_the_environment_skips_the_files(token_env, monkeypatch):
    token_env.mkdir(mode=0o777)
    token_env.chmod(0o777)
    monkeypatch.setenv("ACB_TOKEN", "from-the-environment")
    assert read_token() == "from-the-environment"


def test_the_embedded_broker_directory_is_made_private(token_env):
    assert _broker._private_dir() == token_env
    assert token_env.stat().st_mode & 0o777 == 0o700


def test_a_planted_lock_file_symlink_is_not_opened(token_env, tmp_path):
    victim = write(tmp_path / "victim", "precious\n", 0o600)
    (private_dir(token_env) / "broker.lock").symlink_to(victim)
    with pytest.raises(BrokerError, match=f"lock file {token_env / 'broker.lock'} is a symlink"):
        _broker._lock(token_env / "broker.lock", timeout_s=1)


def test_a_planted_port_file_symlink_is_not_read(token_env, tmp_path):
    victim = write(tmp_path / "victim", json.dumps({"pid": 1}), 0o600)
    (private_dir(token_env) / "broker-1.json").symlink_to(victim)
    with pytest.raises(BrokerError, match="port file .*broker-1.json is a symlink"):
        _broker._read_port_file(token_env / "broker-1.json")


def test_a_planted_broker_log_symlink_is_not_written_through(embedded, tmp_path):
    victim = write(tmp_path / "victim", "precious\n", 0o600)
    (private_dir(embedded["dir"]) / "broker.log").symlink_to(victim)
    result = subprocess.run([sys.executable, "-c", ENSURE], env=embedded["env"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert f"broker log {embedded['dir'] / 'broker.log'} is a symlink" in result.stdout
    assert victim.read_text() == "precious\n"


def test_ensure_broker_in_a_planted_directory_raises_naming_the_path(embedded):
    embedded["dir"].mkdir()
    embedded["dir"].chmod(0o777)  # as another user would leave /tmp/acb-<uid> for us
    result = subprocess.run([sys.executable, "-c", ENSURE], env=embedded["env"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert f"BrokerError: token directory {embedded['dir']} has mode 0777" in result.stdout
    assert "set ACB_TOKEN_DIR to a private directory" in result.stdout
    assert not (embedded["dir"] / "broker.log").exists()


def test_the_broker_refuses_to_start_in_a_planted_token_directory(broker_bin, tmp_path):
    planted = tmp_path / "acb-planted"
    planted.mkdir()
    write(planted / "admin-token", "chosen-by-another-user\n", 0o644)
    planted.chmod(0o777)
    env = {k: v for k, v in os.environ.items() if k not in ("ACB_TOKEN", "ACB_ADMIN_TOKEN")}
    env["ACB_TOKEN_DIR"] = str(planted)
    proc = subprocess.Popen([broker_bin, "--port", "0", "--metrics-port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=10)  # refused at once; a broker that runs fails here
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, (out, err)
    assert f"acb-broker: cannot set up the tokens: token directory {planted} has mode 0777" in err
    assert "set ACB_TOKEN_DIR to a private directory" in err
    assert "listening" not in out


def test_the_broker_port_file_is_not_written_through_a_planted_temporary(broker_bin, tmp_path):
    # The shell plants a symlink at the name a predictable writer would use (<path>.tmp<pid>), then
    # becomes the broker with the same pid.
    victim = write(tmp_path / "victim", "precious\n", 0o600)
    port_file = tmp_path / "broker.port"
    env = {k: v for k, v in os.environ.items() if k not in ("ACB_TOKEN", "ACB_ADMIN_TOKEN")}
    env["ACB_TOKEN_DIR"] = str(tmp_path / "tokens")
    script = 'ln -s "$1" "$2.tmp$$" && exec "$0" --port 0 --metrics-port 0 --port-file "$2"'
    proc = subprocess.Popen(["sh", "-c", script, broker_bin, str(victim), str(port_file)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: port_file.exists() or proc.poll() is not None, 30)
        assert proc.poll() is None, proc.stderr.read()
        assert not port_file.is_symlink()
        assert json.loads(port_file.read_text())["pid"] == proc.pid
        assert port_file.stat().st_mode & 0o777 == 0o644
        assert victim.read_text() == "precious\n"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_broker_and_the_clients_agree_on_the_token_directory(broker_bin, tmp_path, monkeypatch):
    # Without ACB_TOKEN_DIR both use $XDG_RUNTIME_DIR/acb (csrc/common/token.h, _wire.token_dir).
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if k not in ("ACB_TOKEN", "ACB_ADMIN_TOKEN", "ACB_TOKEN_DIR")}
    env["XDG_RUNTIME_DIR"] = str(runtime)
    proc = subprocess.Popen([broker_bin, "--port", "0", "--metrics-port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        assert (read_line(proc.stdout, 20) or "").startswith("acb-broker listening on ")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    for name in ("ACB_TOKEN", "ACB_ADMIN_TOKEN", "ACB_TOKEN_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert read_token() == (runtime / "acb" / "token").read_text().strip()
    assert read_token(admin=True) == (runtime / "acb" / "admin-token").read_text().strip()
