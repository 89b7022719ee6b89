"""Makes operators from threads started with threading.Thread go through acb's hook.

The hook is a dispatch key in thread-local state, which new threads do not
inherit. threading.setprofile() installs a function that every new
threading.Thread runs as its first profile event, before run(): it attaches
the thread (one C++ call) and puts back whatever profile function was there
before, so afterwards the thread runs at full speed. Threads created with
_thread.start_new_thread directly, or started before acb.enable(), are not
attached: they can call acb._C.attach_thread() themselves or use acb.region().
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
    previous = threading.getprofile()

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
