"""acb, the AI computing broker: share GPUs between unmodified PyTorch processes.

`import acb` starts nothing and imports nothing heavy (torch included);
`acb.enable()` joins the process to a broker (starting an embedded local one
when none is named) at its first device operation. Public API::

    acb.enable(priority="training", device=None, broker=None)
    acb.disable()
    acb.status() -> acb.Status
    with acb.region(): ...
    acb.set_priority("inference")

With ``ACB_ENABLE=1`` (or ``ACB_BROKER`` set) and the package installed,
``acb.enable()`` runs by itself as soon as the program imports torch.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Optional

__version__ = "0.1.0"
__all__ = ["enable", "disable", "status", "region", "set_priority", "is_enabled", "Status", "AcbError"]

if TYPE_CHECKING:
    from acb._status import Status


class AcbError(RuntimeError):
    """acb cannot do what was asked; the message says why and what to do."""


def enable(priority: Optional[str] = None, device: Optional[int] = None, broker: Optional[str] = None,
           safe: Optional[bool] = None) -> None:
    """Joins this process to GPU sharing.

    Contacts nothing and initialises no CUDA: the first operation on the
    brokered device opens the device and joins the broker (so a process that
    never computes there is never a broker client). That operation raises
    when the device or the broker cannot be reached; the next one tries again.

    Args:
        priority: "inference", "training" or "batch" (default: ACB_PRIORITY, else "training").
        device: the local CUDA device whose memory acb manages (default: torchrun's
            LOCAL_RANK when set and visible, else 0). Memory the process allocates on
            another device is not shared.
        broker: "host:port" of the broker (default: ACB_BROKER, else an embedded
            local broker is found or started).
        safe: safe mode (default: ACB_SAFE_MODE), for programs that launch work acb
            cannot see (kernels on data_ptr() outside operators, threads it does not
            gate): every offload copies all memory, the device is given up only at a
            revoke deadline, and memory is offloaded only while the enabling thread
            waits inside acb. Once entered, for the life of the process.

    Must run before CUDA is initialised (it installs acb's CUDA allocator);
    otherwise it raises AcbError. Calling it again while enabled does nothing,
    except that safe=True still enters safe mode.
    With ACB_EMULATED_DEVICE set and a CPU build of torch, the brokered device
    is emulated in host memory and CPU tensors created afterwards live on it.
    """
    from acb import _api

    _api.enable(priority=priority, device=device, broker=broker, safe=safe)


def disable() -> None:
    """Makes all of this process's memory resident again, gives the lease back and lets ops run
    ungated; the broker goes on counting that memory (never evicted) until enable() or exit."""
    from acb import _api

    _api.disable()


def is_enabled() -> bool:
    """True while this process takes part in GPU sharing."""
    from acb import _api

    return _api.is_enabled()


def status() -> Status:
    """A snapshot of this process's lease, memory and wait statistics (see acb.Status)."""
    from acb import _api

    return _api.status()


def set_priority(priority: str) -> None:
    """Changes this process's priority class at the broker ("inference", "training" or "batch")."""
    from acb import _api

    _api.set_priority(priority)


@contextmanager
def region() -> Iterator[None]:
    """Holds the device for the whole block, as if it were one operator.

    Use it around code that marks its own region of GPU work, or that reads or
    writes tensor memory without going through torch operators (``numpy()``
    views, ``torch.save``, custom kernels on ``data_ptr()``): inside the block
    the lease is held and all memory is resident; a revoke waits until the
    block ends. Does nothing while acb is not enabled.
    """
    from acb import _api

    with _api.region():
        yield


def __getattr__(name: str) -> Any:
    if name == "Status":
        from acb._status import Status

        return Status
    raise AttributeError(f"module 'acb' has no attribute {name!r}")
