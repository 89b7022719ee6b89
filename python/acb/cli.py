"""The `acb` command: run a broker, look at it, administer it, and the demo.

    acb broker [FLAGS]            run a broker in the foreground (the packaged acb-broker)
    acb status                    devices, holders, queues, clients
    acb top [--interval S]        the same, refreshing
    acb trace -o FILE             the lease timeline as Chrome/Perfetto trace JSON
    acb drain DEV                 stop granting DEV (index or name); its holder is revoked
    acb set-priority ID CLASS     change a client's priority class
    acb demo                      three jobs sharing one device, with a timeline
    acb options                   the ACB_* environment variables
    acb run -- CMD...             run a command with acb enabled

Every command takes --broker HOST:PORT (default: ACB_BROKER, else
127.0.0.1:43210) and, where it prints data, --json. Expected failures
(no broker, a refused request) print one line and exit 1, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import socket
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from . import _format, _trace, options
from ._broker import broker_binary, configured_address, parse_address
from ._wire import BrokerError, Connection, Message, read_token
from .options import PRIORITIES


class CommandError(Exception):
    """An expected failure: printed as one line, exit status 1."""


# --- talking to the broker -------------------------------------------------

def _address(args: argparse.Namespace) -> Tuple[str, int]:
    return parse_address(args.broker) if args.broker else configured_address()


def _admin_token_readable() -> bool:
    try:
        read_token(admin=True)
        return True
    except BrokerError:
        return False


def _unreachable(e: BrokerError) -> bool:
    return isinstance(e.__cause__, (ConnectionRefusedError, socket.timeout, TimeoutError))


def connect(args: argparse.Namespace, admin: Optional[bool] = None) -> Connection:
    """A connection as admin (admin=True), as a client (False), or for looking only (None).

    Looking only needs no more than the client token, so that is what it proves.
    Only when the broker refuses that connection (a client connection is placed
    on a device like a job, which fails while every device drains) or the client
    token is unreadable does it look as admin instead, when the admin token is
    readable: an admin connection is placed nowhere."""
    host, port = _address(args)
    try:
        try:
            return Connection(host, port, name="acb-cli", role="admin" if admin else "client")
        except BrokerError as e:
            if admin is not None or _unreachable(e) or not _admin_token_readable():
                raise
            try:
                return Connection(host, port, name="acb-cli", role="admin")
            except BrokerError:
                raise e from None
    except BrokerError as e:
        if _unreachable(e):
            raise CommandError(f"no acb broker at {host}:{port}; start one with `acb broker`") from None
        raise CommandError(str(e)) from None


def ask(conn: Connection, message: Message) -> Message:
    try:
        return conn.request(message)
    except BrokerError as e:
        raise CommandError(f"the acb broker refused {message['op']}: {e}") from None
    except OSError as e:
        raise CommandError(f"lost the connection to the acb broker: {e}") from None


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


# --- status / top -----------------------------------------------------------

def _who(client_id: Optional[int], names: Dict[int, str]) -> str:
    if client_id is None:
        return "-"
    return f"{names.get(client_id, 'client')} #{client_id}"


def _gang_label(client: Message) -> str:
    """A gang rank's job key and local rank ("run-1 rank 0"), "-" for a client in no gang."""
    gang = client.get("gang")
    if not gang:
        return "-"
    rank = client.get("local_rank")
    return gang if rank is None else f"{gang} rank {rank}"


def render_status(status: Message, address: str) -> str:
    """The status reply as tables a person reads: devices, then clients."""
    devices = status.get("devices", [])
    clients = status.get("clients", [])
    names = {c["client_id"]: c.get("name") or "client" for c in clients}
    total = status.get("clients_total", len(clients))
    head = (f"acb broker {address}: {len(devices)} device{'s' * (len(devices) != 1)}, "
            f"{total} client{'s' * (total != 1)}")
    if status.get("quantum_ms") is not None:
        head += f", quantum {_format.human_duration_us(status['quantum_ms'] * 1000)}"
    device_rows = []
    for d in devices:
        capacity, resident = d.get("capacity_bytes") or 0, d.get("resident_bytes") or 0
        queue = ", ".join(_who(c, names) for c in d.get("queue", [])) or "-"
        device_rows.append([d["device"], d.get("name", ""), _format.human_bytes(capacity),
                            _format.human_bytes(resident),
                            _format.bar(resident / capacity if capacity else 0, 10),
                            _who(d.get("holder"), names), queue, "draining" if d.get("draining") else ""])
    out = [head, "", _format.table(["DEV", "NAME", "CAPACITY", "RESIDENT", "USE", "HOLDER", "QUEUE", ""],
                                   device_rows, right=(0, 2, 3))]
    if clients:
        ordered = sorted(clients, key=lambda c: c["client_id"])
        with_gangs = any(c.get("gang") for c in clients)  # ranks of multi-process jobs: which job, which rank
        client_rows = [[c["client_id"], c.get("name", ""), c.get("pid", ""), c.get("priority", ""),
                        c.get("device", ""), c.get("state", ""), _format.human_bytes(c.get("resident_bytes")),
                        _format.human_bytes(c.get("need_bytes")), c.get("grants", 0),
                        _format.human_duration_us(c.get("waited_us_total")), c.get("preemptions", 0),
                        *([_gang_label(c)] if with_gangs else [])]
                       for c in ordered]
        headers = ["ID", "NAME", "PID", "PRIORITY", "DEV", "STATE", "RESIDENT", "NEED", "GRANTS", "WAITED",
                   "PREEMPTED", *(["GANG"] if with_gangs else [])]
        out += ["", _format.table(headers, client_rows, right=(0, 2, 4, 6, 7, 8, 9, 10))]
    else:
        out += ["", "no clients connected"]
    if status.get("clients_truncated"):
        out += ["", _format.truncation_note(len(clients), total, status.get("clients_by_state", {}))]
    return "\n".join(out)


def _status_without_self(status: Message, own_id: Optional[int]) -> Message:
    """The snapshot minus the command's own connection, which is not a job (nor counted as one)."""
    clients = status.get("clients", [])
    own = [c for c in clients if c.get("client_id") == own_id]
    out = {**status, "clients": [c for c in clients if c.get("client_id") != own_id]}
    if "clients_total" in status:
        # Counted even when it is not on the listed page; a fresh connection is idle.
        state = own[0].get("state") if own else "idle"
        out["clients_total"] = max(0, status["clients_total"] - 1)
        by_state = dict(status.get("clients_by_state", {}))
        if by_state.get(state, 0) > 0:
            by_state[state] -= 1
        out["clients_by_state"] = by_state
    return out


def cmd_status(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        status = _status_without_self(ask(conn, {"op": "status"}), conn.welcome.get("client_id"))
    status.pop("seq", None)
    if args.json:
        emit_json(status)
    else:
        host, port = _address(args)
        print(render_status(status, f"{host}:{port}"))
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        raise CommandError(f"--interval must be positive, got {args.interval:g}")
    host, port = _address(args)
    clear = sys.stdout.isatty() and not args.json
    with connect(args) as conn:
        n = 0
        try:
            while args.iterations is None or n < args.iterations:
                if n:
                    time.sleep(args.interval)  # the refresh period itself
                status = _status_without_self(ask(conn, {"op": "status"}), conn.welcome.get("client_id"))
                status.pop("seq", None)
                if args.json:
                    print(json.dumps(status, sort_keys=True), flush=True)
                else:
                    text = render_status(status, f"{host}:{port}")
                    stamp = time.strftime("%H:%M:%S")
                    print(("\x1b[H\x1b[2J" if clear else "") + f"{text}\n\n{stamp}  (Ctrl-C quits)", flush=True)
                n += 1
        except KeyboardInterrupt:
            pass
    return 0


# --- trace / admin ----------------------------------------------------------

def cmd_trace(args: argparse.Namespace) -> int:
    with connect(args, admin=True) as conn:
        reply = ask(conn, {"op": "trace"})
        status = ask(conn, {"op": "status"})
    slices = reply.get("slices", [])
    names = {d["device"]: d.get("name", "") for d in status.get("devices", [])}
    trace = _trace.to_chrome_trace(slices, names)
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(trace, f)
    except OSError as e:
        raise CommandError(f"cannot write the trace to {args.output}: {e.strerror}") from None
    devices = sorted({s["device"] for s in slices})
    if args.json:
        emit_json({"file": args.output, "leases": len(slices), "devices": devices})
    else:
        print(f"wrote {len(slices)} lease{'s' * (len(slices) != 1)} on {len(devices)} "
              f"device{'s' * (len(devices) != 1)} to {args.output} (open it in https://ui.perfetto.dev)")
    return 0


def _device_index(conn: Connection, text: str) -> int:
    if text.lstrip("-").isdigit():
        return int(text)
    devices = ask(conn, {"op": "status"}).get("devices", [])
    for d in devices:
        if d.get("name") == text:
            return int(d["device"])
    known = ", ".join(f"{d['device']} ({d.get('name', '')})" for d in devices) or "none"
    raise CommandError(f"no device named {text!r}; devices: {known}")


def cmd_drain(args: argparse.Namespace) -> int:
    with connect(args, admin=True) as conn:
        device = _device_index(conn, args.device)
        reply = ask(conn, {"op": "drain_device", "device": device})
    reply.pop("seq", None)
    if args.json:
        emit_json(reply)
    else:
        print(f"device {device} is draining: no new grants there; its holder is revoked")
    return 0


def cmd_set_priority(args: argparse.Namespace) -> int:
    with connect(args, admin=True) as conn:
        reply = ask(conn, {"op": "set_priority", "client_id": args.client_id, "priority": args.priority})
    reply.pop("seq", None)
    if args.json:
        emit_json(reply)
    else:
        print(f"client {args.client_id} now has priority {args.priority}")
    return 0


def cmd_options(args: argparse.Namespace) -> int:
    rows = [[o.env, o.default or '""', os.environ.get(o.env, ""), o.doc] for o in options.table()]
    if args.json:
        emit_json([{"name": o.name, "env": o.env, "type": o.type, "default": o.default, "doc": o.doc,
                    "value": options.get(o.name)} for o in options.table()])
    else:
        print(_format.table(["VARIABLE", "DEFAULT", "SET TO", "MEANING"], rows))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo
    return demo.run(args)


# --- the parser -------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--broker", metavar="HOST:PORT", default=argparse.SUPPRESS,
                        help="the broker's address (default: ACB_BROKER, else 127.0.0.1:43210)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print machine-readable JSON")
    parser = argparse.ArgumentParser(prog="acb", parents=[common],
                                     description="acb, the AI computing broker: share GPUs between PyTorch processes.",
                                     epilog="acb broker [FLAGS] runs acb-broker (see acb broker --help); "
                                            "acb run -- CMD runs a command with acb enabled.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    add("status", cmd_status, "devices, holders, queues and clients of the broker")
    top = add("top", cmd_top, "status, refreshed every --interval seconds")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    top.add_argument("--iterations", type=int, default=None, help="stop after N refreshes")
    trace = add("trace", cmd_trace, "write the lease timeline as Chrome/Perfetto trace JSON (admin)")
    trace.add_argument("-o", "--output", default="acb-trace.json", help="output file (default acb-trace.json)")
    drain = add("drain", cmd_drain, "stop granting a device and revoke its holder (admin)")
    drain.add_argument("device", help="device index or name")
    prio = add("set-priority", cmd_set_priority, "change a client's priority class (admin)")
    prio.add_argument("client_id", type=int, help="the client's ID (see acb status)")
    prio.add_argument("priority", choices=PRIORITIES)
    add("options", cmd_options, "the ACB_* environment variables, their defaults and values")
    demo = add("demo", cmd_demo, "three jobs take turns on one device; prints who held it when")
    demo.add_argument("--jobs", type=int, default=3, help="number of jobs (default 3; the first is inference)")
    demo.add_argument("--phases", type=int, default=4, help="GPU+CPU phase pairs per job (default 4)")
    demo.add_argument("--gpu-ms", type=int, default=300, help="length of a GPU phase (default 300 ms)")
    demo.add_argument("--cpu-ms", type=int, default=300, help="length of a CPU phase (default 300 ms)")
    demo.add_argument("--simulated", action="store_true",
                      help="jobs that only hold the lease, without torch (the default runs real PyTorch "
                           "jobs when torch and acb's extension are installed)")
    demo.add_argument("--embedded", action="store_true",
                      help="use (or start) the shared embedded broker instead of a private one")
    return parser


def _exec_broker(argv: Sequence[str]) -> int:
    try:
        binary = broker_binary()
    except BrokerError as e:
        print(f"acb: {e}", file=sys.stderr)
        return 1
    try:
        os.execv(binary, [binary, *argv])
    except OSError as e:
        print(f"acb: cannot run {binary}: {e.strerror}", file=sys.stderr)
        return 1
    return 0  # not reached: execv replaced this process


def _run_command(argv: Sequence[str]) -> int:
    # `acb run` belongs to the torch integration (acb._run); this build may not have it.
    if importlib.util.find_spec("acb._run") is None:
        print("acb: `acb run` is not available in this build (acb._run is missing)", file=sys.stderr)
        return 1
    return int(importlib.import_module("acb._run").main(list(argv)) or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Pass-through commands: their flags belong to another program.
    if argv and argv[0] == "broker":
        return _exec_broker(argv[1:])
    if argv and argv[0] == "run":
        return _run_command(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    args.broker = getattr(args, "broker", None)
    args.json = getattr(args, "json", False)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except (CommandError, BrokerError) as e:
        print(f"acb: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `acb status | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def broker_main() -> int:
    """The `acb-broker` console script: the packaged broker, with this process's arguments."""
    return _exec_broker(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
