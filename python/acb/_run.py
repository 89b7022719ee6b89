"""`acb run [--priority P] [--broker HOST:PORT] [--name NAME] -- COMMAND ...`

Runs one command with acb auto-activation switched on for it (ACB_ENABLE=1
and the options given), by replacing this process with the command.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from acb.options import PRIORITIES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="acb run", description="run a command with acb enabled for it")
    p.add_argument("--priority", choices=PRIORITIES, help="priority class (default: ACB_PRIORITY or training)")
    p.add_argument("--broker", metavar="HOST:PORT", help="broker address (default: ACB_BROKER or embedded)")
    p.add_argument("--name", help="client name shown by acb status")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("acb run: no command given (usage: acb run [--priority P] -- python train.py)", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["ACB_ENABLE"] = "1"
    if args.priority:
        env["ACB_PRIORITY"] = args.priority
    if args.broker:
        env["ACB_BROKER"] = args.broker
    if args.name:
        env["ACB_NAME"] = args.name
    try:
        os.execvpe(command[0], command, env)
    except OSError as e:
        print(f"acb run: cannot run {command[0]!r}: {e.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
