"""acb.Status: what acb.status() returns (no torch needed to import it).

Its fields after `enabled` are those of csrc/torch/controller_status.h, in
the same order (tests/python/test_status_fields.py holds them together)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, Mapping


@dataclass(frozen=True)
class Status:
    """One snapshot of this process's part in GPU sharing. Sizes in bytes, times in ms."""

    enabled: bool
    #: "disabled", "released", "acquiring", "holding" or "yielding"
    lease_state: str = "disabled"
    client_id: int = 0
    broker_device: int = -1
    resident_bytes: int = 0
    offloaded_bytes: int = 0
    reserved_bytes_peak: int = 0
    #: acquires that blocked an operator (each one a wait for the device)
    waits: int = 0
    wait_total_ms: float = 0.0
    wait_p99_ms: float = 0.0
    wait_max_ms: float = 0.0
    #: grants received: each one a switch of the device onto this process
    switches: int = 0
    #: leases given back to the broker after a revoke
    releases: int = 0
    revokes: int = 0
    evicts: int = 0
    #: offloads of the memory manager, and what they copied or skipped as clean
    offloads: int = 0
    offload_copied_bytes: int = 0
    skipped_clean_bytes: int = 0
    restored_bytes: int = 0
    #: pinned host memory: bytes holding backups of offloaded (or clean) memory, all pinned
    #: bytes (backups plus buffers kept for reuse), and the limit on backups (0: none;
    #: ACB_HOST_BACKUP_LIMIT, default 50% of host RAM)
    host_backup_bytes: int = 0
    host_pinned_bytes: int = 0
    host_backup_limit_bytes: int = 0
    #: regions of GPU work seen (first op after an idle gap to the last before one)
    regions: int = 0
    oom_regrows: int = 0
    #: broker connections re-established after the broker went away
    reconnects: int = 0
    #: yields whose device synchronisation did not finish within
    #: ACB_YIELD_SYNC_TIMEOUT_MS (the lease was released with the memory kept on the device)
    yield_sync_timeouts: int = 0
    #: why the process is in safe mode (acb.enable(safe=True), ACB_SAFE_MODE=1,
    #: acb._C.enter_safe_mode); "" when it is not
    safe_mode_reason: str = ""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Status:
        names = {f.name for f in fields(cls)}
        return cls(enabled=True, **{k: v for k, v in values.items() if k in names and k != "enabled"})

    def as_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
