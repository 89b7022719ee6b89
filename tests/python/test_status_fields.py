"""acb.Status (python/acb/_status.py, importable without torch) names exactly
the fields the extension reports (csrc/torch/controller_status.h), in the
same order: a field added on one side only fails here."""

from dataclasses import fields

import pytest

pytest.importorskip("torch")

from acb import _loader  # noqa: E402
from acb._status import Status  # noqa: E402


def test_status_names_the_extensions_fields_in_order():
    if not _loader.module_files():
        pytest.skip("acb's extension is not built (pip install --no-build-isolation .)")
    extension = _loader.load()
    assert [f.name for f in fields(Status) if f.name != "enabled"] == list(extension.status_fields())
