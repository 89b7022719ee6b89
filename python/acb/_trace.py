"""The broker's lease timeline as a Chrome/Perfetto trace, and as a text chart.

The broker answers `trace` with slices {device, client_id, name, start_us,
end_us} (end_us null while the lease is held; times in microseconds on the
broker's monotonic clock). to_chrome_trace() makes one track (process) per
device and one slice per lease; ascii_timeline() draws the same for a console.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

#: one slice of the broker's trace reply: {device, client_id, name, start_us, end_us}
Slice = Mapping[str, Any]


def _end(s: Slice, now_us: int) -> int:
    return int(s["end_us"]) if s.get("end_us") is not None else now_us


def latest_us(slices: Sequence[Slice]) -> int:
    """The latest time the slices mention: stands in for 'now' for a lease still held."""
    times = [int(s["start_us"]) for s in slices] + [int(s["end_us"]) for s in slices if s.get("end_us") is not None]
    return max(times, default=0)


def to_chrome_trace(slices: Sequence[Slice], device_names: Optional[Mapping[int, str]] = None) -> Dict[str, Any]:
    """{"traceEvents": [...]}: an "X" event per lease (pid = device, tid = client) plus
    process_name / thread_name metadata so the viewer labels tracks by device and client.

    A lease still held ends at the latest time any slice mentions."""
    device_names = device_names or {}
    now = latest_us(slices)
    events: List[Dict[str, Any]] = []
    devices: Dict[int, None] = {}
    threads: Dict[Tuple[int, int], str] = {}
    for s in slices:
        device, client = int(s["device"]), int(s["client_id"])
        devices.setdefault(device)
        threads.setdefault((device, client), f'{s.get("name") or "client"} #{client}')
        start = int(s["start_us"])
        events.append({"ph": "X", "name": s.get("name") or f"client {client}", "cat": "lease",
                       "pid": device, "tid": client, "ts": start, "dur": max(0, _end(s, now) - start),
                       "args": {"client_id": client, "held": s.get("end_us") is None}})
    for device in devices:
        name = device_names.get(device, "")
        events.append({"ph": "M", "name": "process_name", "pid": device, "tid": 0,
                       "args": {"name": f"device {device}" + (f" ({name})" if name else "")}})
    for (device, client), label in threads.items():
        events.append({"ph": "M", "name": "thread_name", "pid": device, "tid": client, "args": {"name": label}})
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def ascii_timeline(slices: Sequence[Slice], width: int = 60) -> str:
    """One row per client (per device): '#' where it held the lease, '.' elsewhere."""
    if not slices:
        return "(no leases yet)"
    now = latest_us(slices)
    t0 = min(int(s["start_us"]) for s in slices)
    span = max(1, now - t0)
    rows: Dict[Tuple[int, int, str], List[str]] = {}
    for s in sorted(slices, key=lambda s: (int(s["device"]), int(s["start_us"]))):
        key = (int(s["device"]), int(s["client_id"]), s.get("name") or "client")
        cells = rows.setdefault(key, ["."] * width)
        first = int((int(s["start_us"]) - t0) * width / span)
        last = max(first, int((_end(s, now) - t0) * width / span - 1e-9))
        for i in range(max(0, first), min(width, last + 1)):
            cells[i] = "#"
    label_width = max(len(f"dev{d} {n} #{c}") for d, c, n in rows)
    lines = [f"{f'dev{d} {n} #{c}'.ljust(label_width)} |{''.join(cells)}|" for (d, c, n), cells in rows.items()]
    # The time axis: 0 under the first cell, the span ending under the closing bar.
    lines.append(" " * (label_width + 2) + "0" + f"{span / 1e6:.2f} s".rjust(width))
    return "\n".join(lines)
