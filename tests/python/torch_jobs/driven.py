"""Driving tests/python/torch_jobs/driven_job.py line by line from a test:
one command at a time, one JSON reply each (see that file for the commands)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

import harness as h
from conftest import read_line


class Driven:
    """A driven job: driven_job.py (or `job`) with `priority` and `args`, or another
    script's `argv` that speaks the same protocol."""

    def __init__(self, env: dict, priority: str = "training", *args: str, job: str = "driven_job.py", argv=None,
                 timeout_s: float = 120.0, log: Optional[Path] = None) -> None:
        """`log`: a file for the job's stderr (jobs that write much there: a pipe nobody reads fills up)."""
        self.timeout_s = timeout_s
        self.log = log
        argv = h.job(job, priority, *args) if argv is None else argv
        stderr = subprocess.PIPE if log is None else open(log, "wb")
        try:
            self.proc = subprocess.Popen([sys.executable, *argv], env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        finally:
            if log is not None:
                stderr.close()
        self.reply("ready")

    def _stderr(self) -> str:
        if self.log is not None:
            return self.log.read_text(errors="replace")[-3000:]
        return self.proc.stderr.read().decode()[-3000:]

    def reply(self, event: str) -> dict:
        line = read_line(self.proc.stdout, self.timeout_s)
        if line is None:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"driven job gave no {event!r}: {self._stderr()}")
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
            if stream is not None:
                stream.close()


def driven_env(broker_factory, capacity: str, *broker_flags: str) -> dict:
    """The environment of driven jobs sharing a fresh broker with one emulated device of `capacity`."""
    root = h.require_package()
    device = h.device_spec(capacity)
    broker = broker_factory("--device", device, *broker_flags)
    return h.acb_env(root, broker, device, ACB_ENABLE="0")
