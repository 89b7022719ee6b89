"""What acb may learn about the CUDA devices before CUDA is initialised.

acb.enable() must not initialise CUDA: a cuInit in a parent makes CUDA unusable
in its forked children (DataLoader workers), and CUDA_VISIBLE_DEVICES is read
once, at that first cuInit, so a program could no longer choose its GPU after
enable(). So enable() asks NVML, as torch.cuda.device_count() does before CUDA
is initialised and torch.cuda.is_available() does under
PYTORCH_NVML_BASED_CUDA_CHECK=1, but never falls back to the CUDA runtime
(which would cuInit) when NVML cannot tell: the first device operation then
finds out, and its error says what is missing.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Optional


def visible_cuda_devices(torch_module: ModuleType) -> Optional[int]:
    """The number of CUDA devices this process would see (CUDA_VISIBLE_DEVICES
    applied), without initialising CUDA: 0 for a torch built without CUDA, None
    when NVML cannot tell (no libnvidia-ml, MIG instances in CUDA_VISIBLE_DEVICES)."""
    cuda = torch_module.cuda
    if not cuda._is_compiled():
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when NVML is missing; None says it
        try:
            count = cuda._device_count_nvml()
        except Exception:  # private API: any change of it means "cannot tell", never a failed enable()
            return None
    return count if count >= 0 else None


def mig_parent_uuid(mig_uuid: str) -> Optional[str]:
    """The UUID ("GPU-...") of the GPU that the MIG instance `mig_uuid` ("MIG-...") is
    part of, asked of NVML (which initialises no CUDA); None when NVML cannot tell."""
    import ctypes

    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        if nvml.nvmlInit_v2() != 0:
            return None
        instance, parent = ctypes.c_void_p(), ctypes.c_void_p()
        if nvml.nvmlDeviceGetHandleByUUID(mig_uuid.encode(), ctypes.byref(instance)) != 0:
            return None
        if nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(instance, ctypes.byref(parent)) != 0:
            return None
        text = ctypes.create_string_buffer(96)
        if nvml.nvmlDeviceGetUUID(parent, text, len(text)) != 0:
            return None
        return text.value.decode("ascii")
    except (OSError, AttributeError):  # no libnvidia-ml, or one without these entry points
        return None
