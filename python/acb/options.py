"""acb's options table, the same one the C++ code compiles in (csrc/common/options.json).

Each option has a name, the ``ACB_*`` environment variable that sets it, a type,
a default and a doc line. ``get(name)`` returns the environment's value when
set (and not empty), else the default, converted to the option's type.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import List, Union

Value = Union[str, int, float, bool]

#: The values the priority option takes, highest class first (docs/scheduling.md).
PRIORITIES = ("inference", "training", "batch")

# Installed: acb/options.json (setup.py copies it). Source tree: csrc/common/options.json.
_CANDIDATES = (
    Path(__file__).resolve().parent / "options.json",
    Path(__file__).resolve().parents[2] / "csrc" / "common" / "options.json",
)


class OptionError(ValueError):
    """An unknown option name, or an environment value of the wrong type."""


@dataclass(frozen=True)
class Option:
    name: str
    env: str
    type: str
    default: str
    doc: str


@lru_cache(maxsize=1)
def table() -> List[Option]:
    """Every option, in the table's order."""
    for path in _CANDIDATES:
        if path.is_file():
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            return [Option(o["name"], o["env"], o["type"], o["default"], o["doc"]) for o in data["options"]]
    raise OptionError("acb's options table is missing (looked at " + ", ".join(map(str, _CANDIDATES)) + ")")


def find(name: str) -> Option:
    for option in table():
        if option.name == name:
            return option
    raise OptionError(f"unknown acb option {name!r}")


def _convert(option: Option, text: str) -> Value:
    try:
        if option.type == "int":
            return int(text)
        if option.type == "float":
            return float(text)
    except ValueError:
        raise OptionError(f"{option.env}={text!r} is not a valid {option.type}") from None
    if option.type == "bool":
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise OptionError(f"{option.env}={text!r} is not a valid bool (use 1 or 0)")
    return text


def raw(name: str) -> str:
    """The option's text: the environment variable when set and not empty, else the default."""
    option = find(name)
    value = os.environ.get(option.env)
    return value if value else option.default


def get(name: str) -> Value:
    """The option's value converted to its type (see raw())."""
    return _convert(find(name), raw(name))
