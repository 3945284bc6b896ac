"""One environment's Terraform stack: its variables, a saved plan, its summary, apply, drift.

phasegate owns exactly one file in the user's Terraform directory, `phasegate.auto.tfvars.json`
(Terraform loads `*.auto.tfvars.json` by itself, so the user's own `terraform apply` keeps
phasegate's decisions instead of reverting them). A change is: write the new variables there,
`terraform plan -out`, summarize `show -json` for the approval, then `apply` that saved plan
exactly. Concurrent steps of one phase share the stack, so every command on a stack holds a
per-directory lock in this process; another process holding Terraform's own state lock gets
the call refused (`-lock-timeout=0s`) with Terraform's message.
"""

import json
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from phasegate.terraform.engine import Engine, TerraformError, error_lines

TFVARS_FILE = "phasegate.auto.tfvars.json"
# Resource types whose destruction loses data: a plan that destroys or replaces one is flagged.
DATA_TYPES = (
    "aws_db_instance",
    "aws_rds_cluster",
    "aws_db_snapshot",
    "aws_elasticache_replication_group",
    "aws_elasticache_cluster",
    "aws_elasticache_snapshot",
    "aws_s3_bucket",
    "aws_dynamodb_table",
)

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class ResourceChange(BaseModel):
    """One resource address in a plan and what Terraform will do to it."""

    address: str
    actions: list[str]
    dangerous: bool = False


class PlanSummary(BaseModel):
    """A saved plan as an approver reads it: counts, per-address actions, dangers."""

    adds: int = 0
    changes: int = 0
    destroys: int = 0
    resources: list[ResourceChange] = Field(default_factory=list)

    @property
    def dangerous(self) -> list[str]:
        return [r.address for r in self.resources if r.dangerous]

    @property
    def empty(self) -> bool:
        return not self.resources

    @classmethod
    def of(cls, resources: list[ResourceChange]) -> "PlanSummary":
        return cls(
            adds=sum("create" in r.actions for r in resources),
            changes=sum(r.actions == ["update"] for r in resources),
            destroys=sum("delete" in r.actions for r in resources),
            resources=resources,
        )

    def beyond(self, base: "PlanSummary") -> "PlanSummary":
        """What this plan does that `base` (a plan of fewer changes) does not."""
        done = {(r.address, tuple(r.actions)) for r in base.resources}
        return PlanSummary.of(
            [r for r in self.resources if (r.address, tuple(r.actions)) not in done]
        )

    def lines(self) -> list[str]:
        """`terraform: update module.rds.aws_db_instance.this`, one per resource."""
        out = []
        for r in self.resources:
            replace = {"delete", "create"} <= set(r.actions)
            verb = "replace" if replace else r.actions[-1]
            flag = ""
            if r.dangerous:
                flag = " (DANGEROUS: replaced)" if replace else " (DANGEROUS: destroys data)"
            out.append(f"terraform {verb} {r.address}{flag}")
        return out


def summarize(plan_json: dict[str, Any]) -> PlanSummary:
    """The resource changes of `terraform show -json PLAN`; no-ops and reads left out.

    A replacement of anything, and any destroy of a data store or snapshot, is dangerous.
    """
    resources = []
    for rc in plan_json.get("resource_changes", []):
        actions = list(rc.get("change", {}).get("actions", []))
        if actions in (["no-op"], ["read"]):
            continue
        replace = "delete" in actions and "create" in actions
        dangerous = replace or ("delete" in actions and rc.get("type") in DATA_TYPES)
        change = ResourceChange(address=rc["address"], actions=actions, dangerous=dangerous)
        resources.append(change)
    return PlanSummary.of(resources)


@contextmanager
def stack_lock(directory: Path) -> Iterator[None]:
    """One Terraform command at a time per directory in this process."""
    key = directory.resolve()
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        yield


class Stack:
    """The environment's Terraform directory and workspace, and phasegate's variables in it."""

    def __init__(self, engine: Engine, var_file: Path | None = None) -> None:
        self.engine = engine
        self.directory = engine.working_dir
        self.var_file = var_file

    @property
    def tfvars_path(self) -> Path:
        return self.directory / TFVARS_FILE

    def _var_args(self) -> list[str]:
        return [f"-var-file={self.var_file}"] if self.var_file else []

    def variables(self) -> dict[str, Any]:
        """phasegate's variables now (the generated file), {} before the first change."""
        try:
            return json.loads(self.tfvars_path.read_text())
        except FileNotFoundError:
            return {}

    def write_variables(self, values: dict[str, Any]) -> None:
        text = json.dumps(dict(sorted(values.items())), indent=2) + "\n"
        tmp = self.tfvars_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.tfvars_path)

    def select_workspace(self) -> None:
        """Make the configured workspace current (created on first use)."""
        ws = self.engine.workspace
        self.engine.check(f"selecting workspace {ws}", "workspace select", "-or-create", ws)

    def plan(self, plan_file: Path, values: dict[str, Any] | None = None) -> PlanSummary:
        """`terraform plan -out=PLAN_FILE`, with `values` overriding the stack's variables
        (phasegate's file included; nothing is written in the directory but the plan file);
        the saved plan's summary."""
        with tempfile.TemporaryDirectory(prefix="phasegate-tf-") as tmp:
            extra = []
            if values:
                proposed = Path(tmp) / "proposed.tfvars.json"
                proposed.write_text(json.dumps(values))
                extra = [f"-var-file={proposed}"]
            self.engine.check(
                "planning",
                "plan",
                "-input=false",
                "-lock-timeout=0s",
                f"-out={plan_file}",
                *self._var_args(),
                *extra,
            )
        return summarize(self.engine.show_json(plan_file))

    def apply_saved(self, plan_file: Path) -> None:
        """Apply exactly the saved plan (Terraform refuses it if the state moved meanwhile)."""
        self.engine.check(
            "applying the saved plan",
            "apply",
            "-input=false",
            "-lock-timeout=0s",
            "-auto-approve",
            str(plan_file),
        )

    def drifted(self) -> tuple[bool, str]:
        """`plan -detailed-exitcode` with the current variables: (changes pending, what)."""
        result = self.engine.run(
            "plan", "-input=false", "-lock-timeout=0s", "-detailed-exitcode", *self._var_args()
        )
        if result.code == 0:
            return False, "no changes"
        if result.code == 2:
            changed = [
                line.strip()
                for line in result.stdout.splitlines()
                if line.strip().startswith("# ") and (" will be " in line or " must be " in line)
            ]
            return True, "; ".join(changed) or "changes pending"
        raise TerraformError(f"drift check: terraform plan failed: {error_lines(result.stderr)}")
