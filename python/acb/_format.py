"""Console formatting for the acb command: sizes, durations and aligned tables.

Pure functions of their inputs (no I/O), so the command's output is tested
by value.
"""

from __future__ import annotations

from typing import List, Mapping, Optional, Sequence

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: Optional[int]) -> str:
    """1536 -> '1.5 KiB'; binary units, three significant digits; None -> '-'."""
    if n is None:
        return "-"
    value = float(n)
    for unit in _BYTE_UNITS:
        if abs(value) < 1024 or unit == _BYTE_UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration_us(us: Optional[float]) -> str:
    """Microseconds for a person: '850 us', '12.3 ms', '4.20 s', '3m05s', '2h01m'."""
    if us is None:
        return "-"
    if us < 1000:
        return f"{us:.0f} us"
    if us < 1_000_000:
        return f"{us / 1000:.3g} ms"
    seconds = us / 1e6
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> str:
    """An aligned text table; columns whose index is in `right` are right-aligned (numbers)."""
    cells: List[List[str]] = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: List[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(parts).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths).rstrip()]
    out.extend(line(r) for r in cells[1:])
    return "\n".join(out)


def bar(fraction: float, width: int = 20) -> str:
    """A usage bar: [#######.............] for 0 <= fraction <= 1 (clamped)."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def truncation_note(shown: int, total: int, by_state: Mapping[str, int]) -> str:
    """The line under a client table the broker cut short (status lists at most 256 clients)."""
    states = ", ".join(f"{by_state[k]} {k}" for k in ("holding", "revoked", "waiting", "idle") if by_state.get(k))
    return (f"{total - shown} more client{'s' * (total - shown != 1)} not listed: the broker lists "
            f"{shown} of {total} ({states or 'none'}); `acb status --json` shows next_after, "
            f"the cursor of the next page")
