"""Makes operators from threads started with threading.Thread go through acb's hook.

The hook is a dispatch key in thread-local state, which new threads do not
inherit. threading.setprofile() installs a function that every new
threading.Thread runs as its first profile event, before run(): it attaches
the thread (one C++ call) and puts back whatever profile function was there
before, so afterwards the thread runs at full speed. Threads created with
_thread.start_new_thread directly after acb.enable() are not attached: they
can call acb._C.attach_thread() themselves or use acb.region().

Threads that already run when acb.enable() is called (however they were
started) never read threading's profile function again: attach_existing()
has acb._C give each of them a one-shot profile function that attaches it
before its next operator (csrc/torch/python_threads.h). Where this Python
does not allow that, it returns why, and the caller puts the process in a
safe mode.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import Any, Callable, Optional

_previous: Optional[Callable[..., Any]] = None
_installed = False


def install(c_module: ModuleType) -> None:
    global _previous, _installed
    if _installed:
        return
    previous: Optional[Callable[..., Any]] = threading.getprofile()

    def attach(frame: Any, event: str, arg: Any) -> Any:
        c_module.attach_thread()
        sys.setprofile(previous)
        if previous is not None:
            return previous(frame, event, arg)
        return None

    _previous = previous
    threading.setprofile(attach)
    _installed = True


def uninstall() -> None:
    global _installed
    if _installed:
        threading.setprofile(_previous)
        _installed = False


def attach_existing(c_module: ModuleType) -> str:
    """Attaches the threads that run now (other than the caller, which enable() attaches).
    Returns "" when done, else why it could not be done."""
    if c_module.attach_existing_threads() >= 0:
        return ""
    others = c_module.other_python_threads()
    if others == 0:
        return ""
    return (f"{others} Python thread(s) were running before acb.enable() and cannot be attached on "
            f"Python {sys.version_info.major}.{sys.version_info.minor}: their operators are not gated")
