"""What a Terraform root module declares: each variable's type and (simple) default.

Read from the `variable` blocks of the directory's *.tf files, without running Terraform, so
a bad variable map is refused before any command runs. Only literal defaults (strings,
numbers, booleans) are read; any other default reads as None.
"""

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_VARIABLE = re.compile(r'^variable\s+"([^"]+)"\s*\{(.*?)^\}', re.MULTILINE | re.DOTALL)
_TYPE = re.compile(r"^\s*type\s*=\s*(.+?)\s*$", re.MULTILINE)
_DEFAULT = re.compile(r"^\s*default\s*=\s*(.+?)\s*$", re.MULTILINE)

PYTHON_TYPES = {bool: "bool", int: "number", float: "number", str: "string"}


class Declared(BaseModel):
    """One `variable` block: its type expression and literal default."""

    type: str = "any"
    default: Any = None
    file: str


def _literal(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def declared_variables(directory: Path) -> dict[str, Declared]:
    """Variable name -> declaration, for the root module in `directory`."""
    found: dict[str, Declared] = {}
    for path in sorted(directory.glob("*.tf")):
        for name, body in _VARIABLE.findall(path.read_text()):
            type_ = _TYPE.search(body)
            default = _DEFAULT.search(body)
            found[name] = Declared(
                type=type_.group(1) if type_ else "any",
                default=_literal(default.group(1)) if default else None,
                file=path.name,
            )
    return found


def terraform_type(value: Any) -> str:
    """The Terraform type of a Python value a step sets: a primitive, list(T) or map(T)
    (an empty list or map reads as list(string), map(string))."""
    if isinstance(value, list | dict):
        kind = "list" if isinstance(value, list) else "map"
        items = value if isinstance(value, list) else list(value.values())
        inner = {terraform_type(v) for v in items} or {"string"}
        return f"{kind}({inner.pop() if len(inner) == 1 else 'any'})"
    return PYTHON_TYPES.get(type(value), "any")


def type_matches(declared: str, value: Any) -> bool:
    """Whether `value` fits a variable declared with type `declared` (list and set take a
    list, map takes a dict; an empty one fits any element type)."""
    declared = declared.replace(" ", "")
    if declared == "any":
        return True
    for kind, python in (("list(", list), ("set(", list), ("map(", dict)):
        if declared.startswith(kind) and declared.endswith(")"):
            if not isinstance(value, python):
                return False
            inner = declared[len(kind) : -1]
            items = value.values() if isinstance(value, dict) else value
            return all(type_matches(inner, v) for v in items)
    return declared == terraform_type(value)
