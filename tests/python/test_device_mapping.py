"""Which broker device a process takes part on: the GPU it computes on, as
the node numbers it (through CUDA_VISIBLE_DEVICES), unless ACB_DEVICE says."""

from __future__ import annotations

import pytest

from acb import _api


@pytest.mark.parametrize("local, visible, expected", [
    (0, None, 0),            # no CUDA_VISIBLE_DEVICES: cuda:N is GPU N
    (1, None, 1),
    (0, "3", 3),             # the process sees GPU 3 as cuda:0
    (1, "2, 5", 5),
    (2, "2,5", -1),          # no such local device
    (0, "GPU-8c1b2c3d-aaaa-bbbb-cccc-000000000000", -1),  # UUIDs: visible_gpu_uuid() names the GPU
    (0, "MIG-1234", -1),
])
def test_node_gpu_follows_cuda_visible_devices(local, visible, expected):
    assert _api.node_gpu(local, visible) == expected


def test_broker_device_is_the_gpu_unless_acb_device_says(monkeypatch):
    monkeypatch.delenv("ACB_DEVICE", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert _api.broker_device_for(1, emulated=False) == 6
    assert _api.broker_device_for(0, emulated=True) == -1  # emulated: the broker places
    monkeypatch.setenv("ACB_DEVICE", "2")
    assert _api.broker_device_for(1, emulated=False) == 2
    assert _api.broker_device_for(0, emulated=True) == 2


@pytest.mark.parametrize("environ, expected", [
    ({}, 0),
    ({"LOCAL_RANK": "3"}, 3),                                  # torchrun: rank 3 computes on cuda:3
    ({"LOCAL_RANK": "3", "CUDA_VISIBLE_DEVICES": "5"}, 0),      # one GPU per rank: it is cuda:0
    ({"LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "4,6"}, 1),
    ({"LOCAL_RANK": "x"}, 0),
])
def test_default_local_device_follows_torchrun(environ, expected):
    assert _api.default_local_device(environ) == expected
    assert _api.default_local_device(environ, emulated=True) == 0  # one emulated device per process


@pytest.mark.parametrize("local, visible, expected", [
    (0, "GPU-8c1b2c3d-aaaa-bbbb-cccc-000000000000", "GPU-8c1b2c3d-aaaa-bbbb-cccc-000000000000"),
    (1, "GPU-8c1b2c3d,GPU-f00d", "GPU-f00d"),                 # prefixes, as CUDA accepts them
    (0, "MIG-GPU-8c1b2c3d-aaaa-bbbb-cccc-000000000000/1/0",  # old-style MIG: the GPU it is part of
     "GPU-8c1b2c3d-aaaa-bbbb-cccc-000000000000"),
    (2, "GPU-8c1b2c3d,GPU-f00d", ""),                       # no such local device
    (0, "3", ""),                                            # ordinals: node_gpu() maps them
    (0, None, ""),
    (0, ",GPU-8c1b2c3d", ""),                                # CUDA stops at the first empty entry
])
def test_visible_gpu_uuid_names_the_gpu_the_broker_maps(local, visible, expected):
    assert _api.visible_gpu_uuid(local, visible) == expected


def test_a_mig_uuid_is_asked_of_nvml(monkeypatch):
    from acb import _cuda_probe

    monkeypatch.setattr(_cuda_probe, "mig_parent_uuid", lambda mig: {"MIG-1234": "GPU-abcd"}.get(mig))
    assert _api.visible_gpu_uuid(0, "MIG-1234") == "GPU-abcd"
    assert _api.visible_gpu_uuid(0, "MIG-5678") == ""  # NVML cannot tell: the broker places


def test_mig_parent_uuid_without_nvml_is_none(monkeypatch):
    import ctypes

    from acb import _cuda_probe

    def no_library(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    assert _cuda_probe.mig_parent_uuid("MIG-1234") is None


def test_broker_device_uuid_only_on_a_gpu_without_acb_device(monkeypatch):
    monkeypatch.delenv("ACB_DEVICE", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8c1b,GPU-f00d")
    assert _api.broker_device_uuid_for(1, emulated=False) == "GPU-f00d"
    assert _api.broker_device_for(1, emulated=False) == -1  # by UUID, not by ordinal
    assert _api.broker_device_uuid_for(1, emulated=True) == ""
    monkeypatch.setenv("ACB_DEVICE", "0")
    assert _api.broker_device_uuid_for(1, emulated=False) == ""
