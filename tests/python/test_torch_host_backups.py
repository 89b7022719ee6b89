"""acb.status() reports the pinned host memory of offloads: the bytes holding backups, all
pinned bytes, and the limit (ACB_HOST_BACKUP_LIMIT; by default half of the host's RAM).
Each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "torch_jobs"))
import harness as h  # noqa: E402

pytest.importorskip("torch")
from acb import options  # noqa: E402

CODE = """
import json, torch, acb
acb.enable()
x = torch.ones(1 << 20) * 3          # 4 MiB on the device; nothing asks for it back
s = acb.status()
print(json.dumps({"backup": s.host_backup_bytes, "pinned": s.host_pinned_bytes,
                  "limit": s.host_backup_limit_bytes, "offloads": s.offloads, "sum": float(x.sum())}))
"""


@pytest.mark.parametrize("limit", [None, "64MiB"])
def test_status_reports_host_backups_and_their_limit(broker_factory, limit):
    root = h.require_package()
    device = h.device_spec("64MiB")
    broker = broker_factory("--device", device)
    extra = {} if limit is None else {"ACB_HOST_BACKUP_LIMIT": limit}
    r = subprocess.run([sys.executable, "-c", CODE], env=h.acb_env(root, broker, device, **extra),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGESIZE")
    # The default the C++ registry applies is the options table's (acb config shows that one).
    default = options.find("host_backup_limit").default
    assert default.endswith("%"), default
    assert out["limit"] == (ram // 100 * int(default[:-1]) if limit is None else 64 << 20), out
    # No offload happened: nothing is pinned (the pool's accounting itself is tested in
    # tests/cpp/alloc/test_offload.cpp, through the same stats).
    assert (out["offloads"], out["backup"], out["pinned"], out["sum"]) == (0, 0, 0, 3.0 * (1 << 20)), out
