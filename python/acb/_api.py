"""The implementation behind acb.enable()/disable()/status()/region()/set_priority().

Imported only when one of them is called; it imports torch. Policy lives in
C++ (acb._C); this module resolves options, installs the CUDA allocator, the
thread hook and the torch.compile wrappers (acb._compile), and converts
results to Python types.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from types import ModuleType
from typing import Iterator, List, Mapping, Optional, Tuple

from acb import AcbError, _gang, options
from acb._status import Status
from acb.options import PRIORITIES

_lock = threading.Lock()
_c_module = None
_allocator_installed = False
#: why the process is in safe mode, when acb._C has no enter_safe_mode() to keep it
_safe_mode_reason = ""

CUDA_ALREADY_INITIALISED = (
    "acb.enable() was called after CUDA was initialised in this process, so acb can no longer install "
    "its memory allocator. Call acb.enable() before any CUDA work (right after `import torch`, before "
    "creating CUDA tensors or calling torch.cuda functions), or set ACB_ENABLE=1 in the environment "
    "(or start the program with `acb run -- python ...`) so that acb is enabled as soon as torch is imported."
)


def _check_priority(priority: str) -> str:
    if priority not in PRIORITIES:
        raise ValueError(f"acb: unknown priority {priority!r}; use one of {', '.join(PRIORITIES)}")
    return priority


def _int_option(name: str) -> int:
    """The int option `name` (acb.options); a malformed value is an AcbError."""
    try:
        return int(options.get(name))
    except options.OptionError as e:
        raise AcbError(f"acb: {e}") from None


def resolve_broker(broker: Optional[str]) -> Tuple[str, int]:
    """The broker to join: the argument, else the address in ACB_BROKER (default
    127.0.0.1:43210), where the first device operation finds the broker or starts the
    embedded local one (acb._broker.ensure_broker). Contacts nothing."""
    from acb import _broker

    if broker:
        try:
            return _broker.parse_address(broker)
        except _broker.BrokerError as e:
            raise AcbError(f"acb: {e}") from None

    host, port = _broker.configured_address()
    return host, int(port)


def visible_devices(visible: Optional[str]) -> Optional[List[str]]:
    """The entries of CUDA_VISIBLE_DEVICES (`visible`), in the order CUDA numbers
    them from 0, up to the first empty one (CUDA ignores the rest); None when it
    is unset (every GPU is visible)."""
    if visible is None:
        return None
    entries = [entry.strip() for entry in visible.split(",")]
    return entries[:entries.index("")] if "" in entries else entries


def default_local_device(environ: Mapping[str, str], emulated: bool = False) -> int:
    """The CUDA device a process computes on when enable() is not told: torchrun's
    LOCAL_RANK when set (each rank then calls torch.cuda.set_device(LOCAL_RANK)),
    unless CUDA_VISIBLE_DEVICES leaves fewer devices than that (one GPU per rank:
    it is device 0); else 0. On the emulated device always 0: a process has one,
    the CPU, whatever its rank."""
    if emulated:
        return 0
    rank = environ.get("LOCAL_RANK", "").strip()
    if not rank.isdigit():
        return 0
    entries = visible_devices(environ.get("CUDA_VISIBLE_DEVICES"))
    if entries is not None and int(rank) >= len(entries):
        return 0
    return int(rank)


def node_gpu(local_device: int, visible: Optional[str]) -> int:
    """The node-wide ordinal of this process's CUDA device `local_device`, which is
    what the broker numbers its devices by (one per GPU, from 0): the entry of
    CUDA_VISIBLE_DEVICES (`visible`) at that position, or the device itself when
    that is unset. -1 when it names GPUs by UUID or MIG instance (the broker then
    finds the device by UUID: broker_device_uuid_for)."""
    entries = visible_devices(visible)
    if entries is None:
        return local_device
    if not 0 <= local_device < len(entries) or not entries[local_device].isdigit():
        return -1
    return int(entries[local_device])


def visible_gpu_uuid(local_device: int, visible: Optional[str]) -> str:
    """The UUID (or UUID prefix, as CUDA accepts) of the GPU that CUDA_VISIBLE_DEVICES
    (`visible`) names at position `local_device`, which the broker maps to its device
    (docs/protocol.md, hello "device_uuid"): "GPU-..." as written; for a MIG instance the
    GPU it is part of, "MIG-GPU-<uuid>/<gi>/<ci>" naming it itself and "MIG-<uuid>" asked of
    NVML (without NVML: ""). "" for ordinals, an unset variable, or no such position."""
    entries = visible_devices(visible)
    if entries is None or not 0 <= local_device < len(entries):
        return ""
    entry = entries[local_device]
    if entry.startswith("GPU-"):
        return entry
    if entry.startswith("MIG-GPU-"):
        return entry[len("MIG-"):].split("/", 1)[0]
    if entry.startswith("MIG-"):
        from acb import _cuda_probe

        return _cuda_probe.mig_parent_uuid(entry) or ""
    return ""


def broker_device_uuid_for(local_device: int, emulated: bool) -> str:
    """With no ACB_DEVICE and a real GPU: the UUID of the GPU this process computes on, when
    CUDA_VISIBLE_DEVICES names it by UUID or MIG instance (visible_gpu_uuid); else ""."""
    if _int_option("device") >= 0 or emulated:
        return ""
    return visible_gpu_uuid(local_device, os.environ.get("CUDA_VISIBLE_DEVICES"))


def broker_device_for(local_device: int, emulated: bool) -> int:
    """The broker device to pin this process to: ACB_DEVICE when set, else the GPU
    it computes on (a process must take part on its own GPU's lease), else -1 on
    the emulated device (one per broker in practice: the broker places)."""
    configured = _int_option("device")
    if configured >= 0 or emulated:
        return configured
    return node_gpu(local_device, os.environ.get("CUDA_VISIBLE_DEVICES"))


def _job_gang() -> Optional[_gang.Gang]:
    """The gang of torch.distributed ranks this process is one of (acb._gang), or None; says on
    stderr when it is a rank of a job with several ranks here that names no job."""
    setting = str(options.get("gang"))
    warning = _gang.unnamed_job_warning(os.environ, setting)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    return _gang.gang_of(os.environ, setting)


def _install_cuda_allocator(torch_module: ModuleType, c_module: Optional[ModuleType] = None) -> None:
    """Makes acb's arena torch's CUDA allocator: a CUDAPluggableAllocator whose alloc_fn raises
    torch.cuda.OutOfMemoryError instead of returning NULL (acb._C's cuda_malloc), and whose
    record_stream and empty_cache reach the arena (acb._C sets them in C++, the only place torch
    lets them be set). Refuses with AcbError, changing nothing, where that torch does not let acb
    see record_stream: memory used on a side stream would be reused too early."""
    global _allocator_installed
    if _allocator_installed:
        return
    if c_module is None:
        from acb import _loader

        c_module = _loader.load()
    missing = c_module.cuda_allocator_hooks_missing()
    if missing:
        raise AcbError(
            f"acb: cannot manage CUDA memory with torch {torch_module.__version__}: acb must receive the "
            f"record_stream and empty_cache calls of torch's CUDA pluggable allocator, or memory that a side "
            f"stream still uses would be reused too early, and this torch does not let it ({missing}). Use a "
            "CUDA build of torch 2.x whose torch/csrc/cuda/CUDAPluggableAllocator.h has set_record_stream_fn "
            "and set_reset_fn, or run without acb.")
    memory = torch_module.cuda.memory
    alloc_fn, free_fn = c_module.cuda_allocator_functions()
    allocator = memory._CUDAAllocator(torch_module._C._cuda_customAllocator(alloc_fn, free_fn))
    memory.change_current_allocator(allocator)
    c_module.install_cuda_allocator_hooks()
    _allocator_installed = True
    from acb import _graphs

    _graphs.install(torch_module)  # capture needs graph pools that acb's allocator does not keep yet


def _default_name() -> str:
    name = str(options.get("name"))
    if name:
        return name
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return f"{program}:{os.getpid()}"


def safe_mode_reason(safe: Optional[bool]) -> str:
    """Why enable() enters safe mode: the argument, else ACB_SAFE_MODE; "" for not."""
    if safe:
        return "acb.enable(safe=True)"
    if safe is None and options.get("safe_mode"):
        return "ACB_SAFE_MODE=1"
    return ""


def enable(priority: Optional[str] = None, device: Optional[int] = None, broker: Optional[str] = None,
           safe: Optional[bool] = None) -> None:
    global _c_module
    with _lock:
        if _c_module is not None and _c_module.enabled():
            # Already enabled (e.g. auto-activated): only safe mode can still be asked for.
            reason = safe_mode_reason(safe)
            if reason:
                _c_module.enter_safe_mode(reason)
            return
        priority = _check_priority(priority or str(options.get("priority")))
        import torch

        if torch.cuda.is_initialized():
            raise AcbError(CUDA_ALREADY_INITIALISED)
        emulated = bool(options.get("emulated_device"))
        local_device = default_local_device(os.environ, emulated) if device is None else int(device)
        # Nothing below initialises CUDA, opens the device or contacts the broker
        # (docs/torch.md, "Lazy start"): the first device operation does.
        if not emulated:
            from acb import _cuda_probe

            if _cuda_probe.visible_cuda_devices(torch) == 0:
                raise AcbError("acb: no CUDA device is available; to try acb without a GPU, set "
                               "ACB_EMULATED_DEVICE (e.g. ACB_EMULATED_DEVICE=acb:1GiB) to use an emulated device")
            _install_cuda_allocator(torch)
        from acb import _loader, _threads

        c_module = _loader.load()
        host, port = resolve_broker(broker)
        from acb import _broker

        def find_broker() -> None:
            # Without an explicit broker, before each connection (the first
            # device operation's, a reconnect's): use the broker at this
            # address, or start the embedded one there.
            _broker.ensure_broker(_broker.format_address(host, port))

        broker_device = broker_device_for(local_device, emulated)
        gang = _job_gang()
        hint = ""
        if broker_device >= 0:
            hint = (f"acb: the broker at {host}:{port} has no device {broker_device}, the GPU this process "
                    f"computes on (CUDA device {local_device}, CUDA_VISIBLE_DEVICES="
                    f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Start the broker without --device "
                    "(it then has one device per GPU) or with one --device per GPU, or set ACB_DEVICE to the "
                    "broker device to use.")
        c_module.enable(host=host, port=port, priority=priority, name=_default_name(), device=local_device,
                        broker_device=broker_device,
                        idle_gap_ms=_int_option("idle_gap_ms"), emulated=emulated,
                        reconnect_timeout_s=float(options.get("reconnect_timeout_s")),
                        restart_broker=None if broker else find_broker,
                        safe_mode_reason=safe_mode_reason(safe), unknown_device_hint=hint,
                        broker_device_uuid=broker_device_uuid_for(local_device, emulated),
                        gang=gang.key if gang else "", gang_local_world_size=gang.local_world_size if gang else 0,
                        gang_local_rank=gang.local_rank if gang else -1)
        _threads.install(c_module)
        reason = _threads.attach_existing(c_module)
        if reason:
            enter_safe_mode(c_module, reason)
        _c_module = c_module
        from acb import _collectives, _compile, _exports, _gating, _host_reads, _triton

        _gating.c_module = c_module
        _compile.install()
        _triton.install()
        _collectives.install()
        _exports.install(emulated)
        if emulated:
            _host_reads.install(torch)


def disable() -> None:
    global _c_module
    with _lock:
        if _c_module is None:
            return
        from acb import _collectives, _threads

        _threads.uninstall()
        _collectives.uninstall()
        from acb import _compile, _exports, _gating, _host_reads

        _compile.uninstall()
        import torch

        _exports.uninstall()
        _host_reads.uninstall(torch)
        _gating.c_module = None
        try:
            _c_module.disable()
            _c_module.detach_thread()  # ops of this thread stop paying for the hook
        finally:
            _c_module = None


def enter_safe_mode(c_module: ModuleType, reason: str) -> None:
    """Puts the process in safe mode for `reason` (acb._C's, where it has one), said once on stderr."""
    global _safe_mode_reason
    enter = getattr(c_module, "enter_safe_mode", None)
    if enter is not None:
        enter(reason)
        return
    if not _safe_mode_reason:
        _safe_mode_reason = reason
        print(f"acb: safe mode: {reason}", file=sys.stderr, flush=True)


def is_enabled() -> bool:
    return _c_module is not None and _c_module.enabled()


def status() -> Status:
    c_module = _c_module
    if c_module is None or not c_module.enabled():
        return Status(enabled=False)
    values = dict(c_module.status())
    values.setdefault("safe_mode_reason", _safe_mode_reason)
    return Status.from_mapping(values)


def set_priority(priority: str) -> None:
    _check_priority(priority)
    if _c_module is None:
        raise AcbError("acb.set_priority(): acb is not enabled in this process")
    _c_module.set_priority(priority)


@contextmanager
def region() -> Iterator[None]:
    """acb.region(): the block may write any memory without an operator saying so
    (data_ptr(), numpy views, custom kernels), so its end marks every segment written."""
    from acb import _gating

    with _gating.held(mark_all=True):
        yield
