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
    """The Terraform primitive type of a Python value a step sets."""
    return PYTHON_TYPES.get(type(value), "any")
