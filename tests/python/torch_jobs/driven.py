"""Driving tests/python/torch_jobs/driven_job.py line by line from a test:
one command at a time, one JSON reply each (see that file for the commands)."""

from __future__ import annotations

import json
import subprocess
import sys

import harness as h
from conftest import read_line


class Driven:
    def __init__(self, env: dict, priority: str, *args: str, job: str = "driven_job.py") -> None:
        self.proc = subprocess.Popen([sys.executable, *h.job(job, priority, *args)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.reply("ready")

    def reply(self, event: str) -> dict:
        line = read_line(self.proc.stdout, 120)
        if line is None:
            self.proc.kill()
            raise AssertionError(f"driven job gave no {event!r}: {self.proc.stderr.read().decode()[-3000:]}")
        out = json.loads(line)
        assert out["event"] == event, out
        return out

    def send(self, command: str) -> None:
        """Sends a command without waiting for its reply (read it with reply())."""
        self.proc.stdin.write((command + "\n").encode())
        self.proc.stdin.flush()

    def do(self, command: str) -> dict:
        self.send(command)
        return self.reply(command.split()[0])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()


def driven_env(broker_factory, capacity: str, *broker_flags: str) -> dict:
    """The environment of driven jobs sharing a fresh broker with one emulated device of `capacity`."""
    root = h.require_package()
    device = h.device_spec(capacity)
    broker = broker_factory("--device", device, *broker_flags)
    return h.acb_env(root, broker, device, ACB_ENABLE="0")
