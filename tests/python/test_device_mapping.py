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
    (0, "GPU-8c1b2c3d-aaaa-bbbb-cccc-000000000000", -1),  # UUIDs: the broker places
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
