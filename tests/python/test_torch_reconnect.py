"""A broker that dies does not take its jobs with it: a job whose embedded
broker is killed gives the device up, starts the broker again with its next
operator, reconnects (reporting what it has resident) and goes on with its
data intact."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402
from _cli_helpers import answers, free_port, pid_alive, wait_until  # noqa: E402
from driven import Driven  # noqa: E402

pytest.importorskip("torch")


def test_job_survives_its_embedded_broker_being_killed(broker_bin, tmp_path):
    root = h.require_package()
    port = free_port()
    token_dir = tmp_path / "tokens"
    device = h.device_spec("64MiB")
    env = h.base_env(root)
    env.update({"ACB_BROKER": f"127.0.0.1:{port}", "ACB_TOKEN_DIR": str(token_dir), "ACB_BROKER_BIN": broker_bin,
                "ACB_EMBEDDED_DEVICES": device, "ACB_EMBEDDED_IDLE_EXIT_S": "5", "ACB_EMULATED_DEVICE": device,
                "ACB_ENABLE": "0"})
    port_file = token_dir / f"broker-{port}.json"

    def broker_pid():
        try:
            return json.loads(port_file.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            return None

    job = Driven(env, "training")  # enable() starts the embedded broker
    try:
        job.do("grow 8")  # 2M floats of 1.0, lease held
        elements = 8 << 18
        first = broker_pid()
        assert first is not None and pid_alive(first)
        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: not pid_alive(first), 10)

        # The job notices at once and gives the device up (no operator in flight).
        assert wait_until(lambda: job.do("status")["status"]["lease_state"] == "released", 10)
        job.do("touch")  # needs the device: starts the broker again, reconnects, acquires
        s = job.do("keptsum")
        assert s["result"] == 2.0 * elements
        assert s["status"]["reconnects"] == 1, s["status"]
        assert s["status"]["lease_state"] == "holding"
        second = broker_pid()
        assert second is not None and second != first and pid_alive(second)
        assert answers(port)
    finally:
        job.close()
        pid = broker_pid()
        if pid is not None and pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
