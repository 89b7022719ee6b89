"""Loads the private extension acb._C, with a plain-words error when it does not fit.

acb._C is compiled against one torch version; loaded into another it fails
with an undefined symbol. The build records its torch version both in the
module (``_C.torch_version``) and as text in the binary, so the error can say
which torch it needs even when the module cannot be loaded.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import List, Optional

_MARKER = re.compile(rb"ACB_BUILT_AGAINST_TORCH=([^;\x00]{1,64});")


def built_against(path: Path) -> Optional[str]:
    """The torch version recorded in a compiled acb._C file, or None."""
    try:
        match = _MARKER.search(path.read_bytes())
    except OSError:
        return None
    return match.group(1).decode("ascii", "replace") if match else None


def module_files() -> List[Path]:
    """The compiled acb._C files in the package (none when it was installed without the extension)."""
    return sorted(Path(__file__).resolve().parent.glob("_C*.so"))


def load() -> ModuleType:
    """Imports torch, then acb._C. Raises ImportError that names both torch versions on a mismatch."""
    import torch

    installed = torch.__version__
    try:
        from acb import _C
    except ImportError as e:
        files = module_files()
        if not files:
            raise ImportError(
                "acb was installed without its torch extension acb._C (torch was missing at build time?); "
                "reinstall with: pip install --no-build-isolation ."
            ) from e
        built = built_against(files[0])
        if built is not None and built != installed:
            raise ImportError(
                f"acb's extension acb._C was built against torch {built}, but torch {installed} is installed; "
                f"rebuild acb against this torch: pip install --no-build-isolation --force-reinstall . "
                f"(loader error: {e})"
            ) from e
        raise ImportError(f"acb's extension acb._C (built against torch {built or 'unknown'}) failed to load "
                          f"with torch {installed}: {e}") from e
    if _C.torch_version != installed:
        raise ImportError(
            f"acb's extension acb._C was built against torch {_C.torch_version}, but torch {installed} is "
            f"installed; rebuild acb against this torch: pip install --no-build-isolation --force-reinstall ."
        )
    return _C
