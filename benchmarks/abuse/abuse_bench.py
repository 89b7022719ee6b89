"""A legitimate client's grant round trip while a local user attacks the broker.

For each attack a fresh broker starts (port 0, its own token directory, one
device). The legitimate client connects first and measures `acquire` ->
`grant` -> `release` round trips on the idle broker; then the attack starts
in separate processes and the same client measures again while it runs.
Figures per attack:
  abuse_grant_p50_ratio_<attack>, abuse_grant_p99_ratio_<attack>
      the round trip under attack over the same client's on the idle broker
      (same broker, same run): 1.0 is no effect; the target is p99 <= 3.
  abuse_broker_peak_rss_mib_<attack>
      the broker's peak resident memory (VmHWM) at the end of the attack;
      the target is under 256 MiB.
  abuse_broker_cpu_s_<attack>
      CPU seconds the broker spent during the attack window.
  abuse_broker_survived_<attack>
      1 when the broker still runs and serves at the end, else 0.

The attack processes run at nice 19, so that on a machine with few cores the
figure measures what the broker does under attack, not how the kernel shares
the CPU with the attackers. When run as root they run as uid 65534 (nobody),
as another local user would; otherwise as this user.

  python3 abuse_bench.py [--attacks a,b,...] [--window-s S] [--timeout-s S]
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "python"))  # the sources' acb, when the package is not installed

from acb import _broker_process  # noqa: E402

NOBODY = 65534
ATTACK_USER_IS_OTHER = os.geteuid() == 0


def figure(name: str, value: float, unit: str) -> None:
    print(f"FIGURE {name} {value:.4g} {unit}", flush=True)


def broker_binary() -> str:
    if os.environ.get("ACB_BROKER_BIN"):
        return os.environ["ACB_BROKER_BIN"]
    from acb._broker import broker_binary as packaged

    return packaged()


# ---------------------------------------------------------------- the broker

class Broker:
    """A private acb-broker on port 0 with its own token directory."""

    def __init__(self, workdir: Path, *flags: str, nofile: Optional[int] = None) -> None:
        self.workdir = workdir
        self.tokens = workdir / "tokens"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACB_")}
        env["ACB_TOKEN_DIR"] = str(self.tokens)
        self.log = open(workdir / "broker.log", "wb")

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        try:
            self.proc, listening = _broker_process.start(
                [broker_binary(), "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
                 "--device", "bench:80GiB", *flags], env, self.log, 20.0, preexec_fn=limit)
        except _broker_process.BrokerStartError as e:
            raise SystemExit(f"benchmarks/abuse: {e}; "
                             f"log: {(workdir / 'broker.log').read_text(errors='replace')[-2000:]}") from None
        self.port = listening.port
        # Attackers of another uid must be able to read the client token (an
        # authenticated local user); the admin token stays private.
        self.client_token = (self.tokens / "token").read_text().strip()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def status_field(self, field: str) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])  # kB
        raise RuntimeError(f"no {field} in /proc/{self.proc.pid}/status")

    def cpu_s(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        _broker_process.stop(self.proc)
        self.log.close()


# ------------------------------------------------------ the legitimate client

def connect(port: int, token: Optional[str] = None, **hello):
    from acb._wire import Connection

    return Connection("127.0.0.1", port, token=token, timeout_s=30.0, **hello)


def grant_round_trips(conn, window_s: float, timeout_s: float) -> List[float]:
    """Seconds from sending acquire to reading its grant, round after round for
    window_s. A round still waiting after timeout_s ends the measurement with
    that wait as its sample: an attack that stalls the broker shows."""
    samples: List[float] = []
    heartbeat_s = conn.welcome["heartbeat_interval_ms"] / 1000
    window_end = time.monotonic() + window_s
    while time.monotonic() < window_end:
        end = time.monotonic() + timeout_s
        start = time.perf_counter()
        conn.send({"op": "acquire"})
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                samples.append(time.perf_counter() - start)
                return samples
            try:  # a waiting client heartbeats, as acb's own client does
                message = conn.recv(timeout_s=min(remaining, heartbeat_s))
            except socket.timeout:
                conn.send({"op": "heartbeat"})
                continue
            if message.get("op") == "grant":
                break
            if message.get("op") == "error":
                raise RuntimeError(f"the broker dropped the legitimate client: {message}")
        samples.append(time.perf_counter() - start)
        conn.send({"op": "release", "resident_bytes": 0})
    return samples


def percentile(samples: List[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


# ------------------------------------------------------------------ attacks
# Each runs in its own process until it is terminated.

def raw_socket(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def attack_utf8_frame(port: int, token: str) -> None:
    """A frame with no token whose error text used to end inside a UTF-8 character."""
    bad = frame(('{"op":"a' + "\u00e9" * 40 + '"}').encode())
    while True:
        try:
            with raw_socket(port) as s:
                s.sendall(bad)
                while s.recv(65536):
                    pass
        except OSError:
            time.sleep(0.001)


def attack_partial_frames(port: int, token: str) -> None:
    """2000 unauthenticated connections, each sending most of a 1 MiB frame."""
    held: List[socket.socket] = []
    body = b"x" * ((1 << 20) - 1)
    while True:
        held = [s for s in held if s.fileno() >= 0]
        while len(held) < 2000:
            try:
                s = raw_socket(port)
                s.setblocking(False)
                s.send(struct.pack(">I", 1 << 20))
                try:
                    s.send(body)
                except BlockingIOError:
                    pass
                held.append(s)
            except OSError:
                break
        time.sleep(0.05)
        for s in list(held):  # closed by the broker: reopen
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    s.close()
                    held.remove(s)
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                held.remove(s)


def attack_fd_exhaustion(port: int, token: str) -> None:
    """Connections until the broker runs out of descriptors, held open."""
    held: List[socket.socket] = []
    while True:
        try:
            held.append(raw_socket(port))
        except OSError:
            time.sleep(0.01)
        if len(held) > 4000:
            time.sleep(0.1)


def attack_huge_names(port: int, token: str) -> None:
    """Clients with 1 MB names, and status requests that copy every name."""
    name = "n" * 1_000_000
    conns = []
    for _ in range(4):
        try:
            conns.append(connect(port, token, name=name))
        except Exception:
            pass  # refused: the limit works
    status = connect(port, token, name="status-spammer")
    while True:
        try:
            for _ in range(300):
                status.request({"op": "status"}, timeout_s=30)
        except Exception:
            status.close()
            status = connect(port, token, name="status-spammer")


def attack_status_flood(port: int, token: str) -> None:
    """300 clients with 256-byte names, and one that asks for status non-stop."""
    status = connect(port, token, name="status-spammer")
    idle = []
    for i in range(300):  # as many as the broker admits (max_connections_per_uid)
        try:
            idle.append(connect(port, token, name=f"{i:03d}" + "s" * 253))
        except Exception:
            break
    deadline = time.monotonic()
    while True:
        status.request({"op": "status"}, timeout_s=30)
        if time.monotonic() > deadline:  # the idle ones must heartbeat, as real clients do
            for c in idle:
                c.send({"op": "heartbeat"})
            deadline = time.monotonic() + 1.0


def attack_non_readers(port: int, token: str) -> None:
    """100 clients that flood status requests and never read a reply."""
    conns = []
    for i in range(100):  # as many as the broker admits (max_connections_per_uid)
        try:
            conns.append(connect(port, token, name=f"mute-{i}"))
        except Exception:
            break
    request = frame(b'{"op":"status","seq":1}') * 64
    for c in conns:
        c.sock.setblocking(False)
    while True:
        for c in conns:
            try:
                c.sock.send(request)
            except (BlockingIOError, OSError):
                pass
        time.sleep(0.001)


def attack_pipelining(port: int, token: str) -> None:
    """One client sends 1000 status requests back to back, then reads them all."""
    conn = connect(port, token, name="pipeliner")
    batch = b"".join(frame(f'{{"op":"status","seq":{i}}}'.encode()) for i in range(1000))
    while True:
        conn.sock.sendall(batch)
        for _ in range(1000):
            conn.recv(timeout_s=60)


def attack_revoke_ignorers(port: int, token: str) -> None:
    """8 clients that take the lease and never give it back when revoked."""
    import threading

    def ignorer(i: int) -> None:
        while True:
            try:
                conn = connect(port, token, name=f"ignorer-{i}")
                conn.send({"op": "acquire"})
                while True:  # heartbeats, never a release
                    try:
                        conn.recv(timeout_s=1.0)
                    except socket.timeout:
                        pass
                    conn.send({"op": "heartbeat"})
            except Exception:
                time.sleep(0.05)

    threads = [threading.Thread(target=ignorer, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def attack_inference_claim(port: int, token: str) -> None:
    """8 clients that claim the inference class and take the lease in a loop."""
    import threading

    def claimer(i: int) -> None:
        while True:
            try:
                conn = connect(port, token, name=f"claimer-{i}", priority="inference")
                while True:
                    conn.send({"op": "acquire"})
                    while conn.recv(timeout_s=30).get("op") != "grant":
                        pass
                    time.sleep(0.05)  # hold the device 50 ms, then again
                    conn.send({"op": "release", "resident_bytes": 0})
            except Exception:
                time.sleep(0.05)

    threads = [threading.Thread(target=claimer, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


ATTACKS: Dict[str, Callable[[int, str], None]] = {
    "utf8_frame": attack_utf8_frame,
    "partial_frames": attack_partial_frames,
    "fd_exhaustion": attack_fd_exhaustion,
    "huge_names": attack_huge_names,
    "status_flood": attack_status_flood,
    "non_readers": attack_non_readers,
    "pipelining": attack_pipelining,
    "revoke_ignorers": attack_revoke_ignorers,
    "inference_claim": attack_inference_claim,
}
# The broker's descriptor limit in the attack that exhausts it.
FD_EXHAUSTION_NOFILE = 512


def run_attacker(name: str, port: int, token: str) -> None:
    """The attacker process: nice 19, another uid when we may, then attack."""
    os.nice(19)
    # Everything the attacks import, imported while this process may still read
    # this interpreter's files (another uid may not).
    import encodings.idna  # noqa: F401  (socket.create_connection encodes host names with it)
    import threading  # noqa: F401

    import acb._wire  # noqa: F401
    if ATTACK_USER_IS_OTHER:
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    ATTACKS[name](port, token)


def start_attacker(name: str, port: int, token: str) -> subprocess.Popen:
    def raise_nofile() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

    return subprocess.Popen([sys.executable, __file__, "--attacker", name, "--port", str(port), "--token", token],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=raise_nofile)


def measure(name: str, window_s: float, timeout_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix="acb-abuse-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)  # so that attackers of another uid can reach nothing but the port
        nofile = FD_EXHAUSTION_NOFILE if name == "fd_exhaustion" else None
        broker = Broker(workdir, nofile=nofile)
        attacker = None
        try:
            legit = connect(broker.port, broker.client_token, name="legitimate")
            idle = grant_round_trips(legit, window_s, timeout_s)
            attacker = start_attacker(name, broker.port, broker.client_token)
            # Let the attack build up (connections opened, queues filled) before measuring.
            time.sleep(2.0)  # the attack's own pace, not a synchronisation
            cpu_before = broker.cpu_s()
            started = time.monotonic()
            try:
                under = grant_round_trips(legit, window_s, timeout_s)
            except (OSError, RuntimeError) as e:  # BrokerError: the broker died or dropped us
                print(f"# {name}: the legitimate client lost the broker: {e}", flush=True)
                under = [float("inf")]
            elapsed = time.monotonic() - started
            cpu = broker.cpu_s() - cpu_before
            survived = broker.alive()
            if survived:
                try:
                    with connect(broker.port, broker.client_token, name="after") as after:
                        after.request({"op": "status"}, timeout_s=10)
                except Exception as e:
                    print(f"# {name}: the broker runs but a new client failed: {e}", flush=True)
                    survived = False
            peak_mib = broker.status_field("VmHWM") / 1024 if broker.alive() else float("nan")
            legit.close()
        finally:
            if attacker is not None:
                attacker.terminate()
                try:
                    attacker.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    attacker.kill()
                    attacker.wait()
                err = attacker.stderr.read().decode(errors="replace").strip()
                attacker.stderr.close()
                if err:
                    print(f"# {name} attacker stderr: {err[-500:]}", flush=True)
            broker.close()
        print(f"# {name}: idle {len(idle)} samples, p50 {percentile(idle, 0.5) * 1e6:.0f} us "
              f"p99 {percentile(idle, 0.99) * 1e6:.0f} us; "
              f"under attack {len(under)} samples in {elapsed:.1f} s, p50 {percentile(under, 0.5) * 1e6:.0f} us "
              f"p99 {percentile(under, 0.99) * 1e6:.0f} us", flush=True)
        figure(f"abuse_grant_p50_ratio_{name}", percentile(under, 0.5) / percentile(idle, 0.5), "x")
        figure(f"abuse_grant_p99_ratio_{name}", percentile(under, 0.99) / percentile(idle, 0.99), "x")
        figure(f"abuse_broker_peak_rss_mib_{name}", peak_mib, "MiB")
        figure(f"abuse_broker_cpu_s_{name}", cpu, "s")
        figure(f"abuse_broker_survived_{name}", 1.0 if survived else 0.0, "bool")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated, from: " + ", ".join(ATTACKS))
    parser.add_argument("--window-s", type=float, default=float(os.environ.get("ACB_BENCH_WINDOW_S", "10")),
                        help="seconds of round trips in each phase (idle, under attack)")
    parser.add_argument("--timeout-s", type=float, default=20.0,
                        help="a round trip longer than this ends the phase")
    parser.add_argument("--attacker", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attacker:
        run_attacker(args.attacker, args.port, args.token)
        return
    names = [n for n in args.attacks.split(",") if n]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise SystemExit(f"benchmarks/abuse: unknown attack(s) {', '.join(unknown)} (have: {', '.join(ATTACKS)})")
    print(f"# attackers run as {'uid 65534' if ATTACK_USER_IS_OTHER else 'this user'}, nice 19", flush=True)
    for name in names:
        measure(name, args.window_s, args.timeout_s)


if __name__ == "__main__":
    main()
