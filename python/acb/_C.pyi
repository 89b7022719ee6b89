"""Types of acb._C, the private extension that csrc/torch/bindings.cpp defines.

Only what the package reads by name before it trusts the module is written
here; every other binding is Any, so this file never has to follow the C++
signatures (the Python tests call each of them).
"""

from typing import Any

#: the torch version the extension was compiled against (acb._loader compares it)
torch_version: str

def __getattr__(name: str) -> Any: ...
