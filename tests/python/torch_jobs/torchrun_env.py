"""The environment torchrun gives the ranks of a job whose ranks are all on this
node, for the tests and benchmarks that start such ranks themselves (plain
Python: the benchmarks import it too, without pytest)."""

from __future__ import annotations

from typing import Dict, Optional


def free_port() -> int:
    """A loopback TCP port nobody listens on now (for a job's MASTER_PORT; rank 0 binds it next)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, world_size: int, master_port: int, run_id: Optional[str] = None) -> Dict[str, str]:
    """What torchrun gives rank `rank` of a job with all its ranks on this node (run_id None:
    TORCHELASTIC_RUN_ID unset, as under a launcher other than torchrun)."""
    env = {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
           "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(master_port),
           "GLOO_SOCKET_IFNAME": "lo"}
    if run_id is not None:
        env["TORCHELASTIC_RUN_ID"] = run_id
    return env
