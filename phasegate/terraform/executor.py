"""The Terraform executor: a step's change made by changing the stack's variables.

A platform managed by Terraform cannot be changed behind Terraform's back (its next `apply`
would revert phasegate's work), so with `executor: terraform` a step that declares the
migration decisions it stands for (`Step.terraform_decisions`) runs through `TerraformStep`:

- observe: phasegate's variables now (phasegate.auto.tfvars.json over the stack's defaults)
  and the step's own observation of AWS (for the cost delta and its refusals);
- plan: the decisions as variable changes, `terraform plan -out` on them, and `show -json`
  summarized (adds, changes, destroys per address; replacements and destroys of data flagged
  dangerous) into the Change the operator approves, with the step's own blockers and those
  only the stack can lift (`Step.terraform_blockers`). A step planned before the steps it
  stands on have applied (`Step.terraform_prerequisites`) is summarized as what it adds on
  top of theirs, the plan it makes when its turn comes;
- apply: exactly that saved plan (re-planned, and refused if different, when the Change is an
  older one), then the variables written to phasegate.auto.tfvars.json. A step whose change
  is only safe in order (`Step.terraform_stages`) is applied stage by stage instead, each
  waited out (`Step.terraform_stage_applied`) before the next; a resumed run skips the stages
  the stack already has. Then what Terraform keeps no record of (`Step.terraform_applied`: a
  reboot);
- verify: still AWS's word, through the step's own reading: nothing left to change there;
- rollback: the variables from before, planned and applied the same way (a staged change's
  stages in reverse); verify_rollback:
  `terraform plan -detailed-exitcode` is clean again.

A step that declares no decisions runs as it always does (the API executor).
"""

import tempfile
from pathlib import Path
from typing import Any

from phasegate.errors import ConfigError
from phasegate.steps import (
    Change,
    Observation,
    PlanChanged,
    Record,
    Reversibility,
    Step,
    VerificationFailed,
    diff_entry,
)
from phasegate.terraform.engine import Engine, TerraformError
from phasegate.terraform.settings import TerraformSettings
from phasegate.terraform.stack import PlanSummary, Stack, stack_lock
from phasegate.terraform.variables import declared_variables, terraform_type, type_matches

NO_DISRUPTION = Reversibility(
    restart_needed=False, rollback_possible=True, expected_disruption="none"
)


class TerraformObservation(Observation):
    """phasegate's variables now and the step's own reading of AWS."""

    variables: dict[str, Any]
    inner_change: Change | None = None


def stack_for(settings: TerraformSettings, source: Path | None, where: str) -> Stack:
    """The environment's stack; a missing directory or var file is bad input (exit 2), its
    message starting with `where` (the environment, and the step or phase asking)."""
    if settings.dir is None:
        raise ConfigError(f"{where}: executor is terraform but terraform.dir is not set")
    base = source.parent if source else Path.cwd()
    directory = settings.dir if settings.dir.is_absolute() else base / settings.dir
    if not directory.is_dir() or not any(directory.glob("*.tf")):
        raise ConfigError(
            f"{where}: terraform.dir {directory} is not a Terraform directory (no *.tf files there)"
        )
    var_file = settings.var_file
    if var_file is not None and not var_file.is_absolute():
        var_file = base / var_file
    if var_file is not None and not var_file.is_file():
        raise ConfigError(f"{where}: terraform.var_file {var_file} does not exist")
    try:
        engine = Engine(directory, settings.workspace, settings.binary)
    except TerraformError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return Stack(engine, var_file=var_file)


class TerraformStep(Step):
    """`inner`'s change made through the environment's Terraform stack (see the module)."""

    def __init__(self, inner: Step) -> None:
        self.inner = inner
        self.id = inner.id  # type: ignore[misc]
        self.phase = inner.phase  # type: ignore[misc]
        self.title = inner.title  # type: ignore[misc]
        self.after = inner.after  # type: ignore[misc]
        self.iam_actions = inner.iam_actions  # type: ignore[misc]
        super().__init__(inner.ctx)
        config = inner.ctx.config
        self.settings = config.terraform
        self.where = f"{config.name}: step {inner.id}"
        self.stack = stack_for(self.settings, config.source, self.where)
        self._saved: tuple[str, Path] | None = None  # (change digest, saved plan file)
        self._check_variables()

    # -- variables ---------------------------------------------------------------------------

    def _check_variables(self) -> None:
        """Every variable the step sets must be declared, with the type of its value."""
        declared = declared_variables(self.stack.directory)
        for decision, value in self.inner.terraform_decisions().items():
            name = self.settings.variable(decision)
            if name not in declared:
                raise ConfigError(
                    f"{self.where}: terraform.variables maps {decision} to variable {name!r}, "
                    f"which {self.stack.directory} does not declare"
                )
            if not type_matches(declared[name].type, value):
                raise ConfigError(
                    f"{self.where}: variable {name!r} ({declared[name].file}) is "
                    f"{declared[name].type}, but {decision} is a {terraform_type(value)}"
                )

    def _current(self) -> dict[str, Any]:
        """The step's decisions as the stack has them now, by decision name."""
        return self._values(self.inner.terraform_decisions())

    def _values(self, decisions: dict[str, Any]) -> dict[str, Any]:
        """`decisions`' variables as the stack has them now (written, else declared defaults)."""
        declared = declared_variables(self.stack.directory)
        written = self.stack.variables()
        current = {}
        for decision in decisions:
            name = self.settings.variable(decision)
            default = declared[name].default if name in declared else None
            current[decision] = written.get(name, default)
        return current

    def _pending_prerequisites(self) -> dict[str, Any]:
        """The earlier steps' decisions this step stands on that the stack does not have yet."""
        wanted = self.inner.terraform_prerequisites()
        now = self._values(wanted)
        return {k: v for k, v in wanted.items() if now[k] != v}

    def _named(self, decisions: dict[str, Any]) -> dict[str, Any]:
        return {self.settings.variable(d): v for d, v in decisions.items()}

    def target(self) -> dict[str, Any]:
        return self.inner.target()

    # -- the verbs -----------------------------------------------------------------------------

    def observe(self) -> TerraformObservation:
        inner_change = self.inner.plan(self.inner.observe())
        return TerraformObservation(variables=self._current(), inner_change=inner_change)

    def _plan_file(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="phasegate-plan-")) / "phasegate.tfplan"

    def _saved_plan(self, decisions: dict[str, Any]) -> tuple[Path, PlanSummary]:
        plan_file = self._plan_file()
        with stack_lock(self.stack.directory):
            self.stack.select_workspace()
            summary = self.stack.plan(plan_file, self._named(decisions))
        return plan_file, summary

    def plan(self, obs: Observation) -> Change | None:
        assert isinstance(obs, TerraformObservation)
        desired = {**obs.variables, **self.inner.terraform_decisions()}
        if desired == obs.variables:
            return None
        pending = self._pending_prerequisites()
        if pending:  # planned before the steps it stands on: what it adds on top of theirs
            base = self._saved_plan(pending)[1]
            plan_file, summary = None, self._saved_plan({**pending, **desired})[1].beyond(base)
        else:
            plan_file, summary = self._saved_plan(desired)
        inner = obs.inner_change
        settings = ", ".join(
            f"{self.settings.variable(k)} = {v!r}"
            for k, v in desired.items()
            if obs.variables.get(k) != v
        )
        stages = self.inner.terraform_stages()
        in_order = (
            [
                f"terraform applies in {len(stages)} stages, each settled before the next: "
                + "; then ".join(
                    ", ".join(f"{self.settings.variable(k)} = {v!r}" for k, v in stage.items())
                    for stage in stages
                )
            ]
            if len(stages) > 1
            else []
        )
        change = self.change(
            f"terraform: {settings}" + (f" ({inner.summary})" if inner else ""),
            [
                *summary.lines(),
                *in_order,
                f"terraform apply of the saved plan: {summary.adds} to add, "
                f"{summary.changes} to change, {summary.destroys} to destroy",
            ],
            inner.monthly_cost_delta if inner else 0.0,
            reversibility=inner.reversibility if inner else NO_DISRUPTION,
            before={"variables": obs.variables},
            desired={"variables": desired, "plan": summary.model_dump(), "stages": stages},
            blockers=[*inner.blockers, *self.inner.terraform_blockers(inner)] if inner else [],
        )
        self._saved = (change.digest(), plan_file) if plan_file else None
        return change

    def _refuse_unless(self, approved: dict[str, Any], summary: PlanSummary) -> None:
        if summary.model_dump() != approved:
            raise PlanChanged(
                f"{self.where}: Terraform now plans {summary.lines() or 'no changes'}, not the "
                "approved plan; nothing was applied, plan and approve again"
            )

    def _apply_variables(self, decisions: dict[str, Any], approved: dict[str, Any] | None) -> dict:
        """Plan (or reuse the saved plan) for `decisions`, check it against `approved`,
        apply it and write the variables; the plan's summary."""
        plan_file, summary = self._saved_plan(decisions)
        if approved is not None:
            self._refuse_unless(approved, summary)
        with stack_lock(self.stack.directory):
            self.stack.apply_saved(plan_file)
        self.stack.write_variables({**self.stack.variables(), **self._named(decisions)})
        return summary.model_dump()

    def _apply_in_stages(self, start: dict[str, Any], stages: list[dict[str, Any]]) -> None:
        """From the variables `start`, apply each stage's values on top of the last, skipping
        a stage the stack already has (a resumed run), each waited out before the next."""
        values = dict(start)
        for number, stage in enumerate(stages, 1):
            values.update(stage)
            current = self._current()
            if any(current.get(k) != v for k, v in stage.items()):
                self._apply_variables(values, None)
                self.progress(variables=values, stage=number)
            self.inner.terraform_stage_applied()

    def apply(self, change: Change) -> dict[str, Any]:
        desired = change.desired["variables"]
        stages = change.desired.get("stages") or [desired]
        before = (change.before or {}).get("variables") or {}
        if len(stages) > 1:
            plan = change.desired["plan"]
            just_planned = self._saved is not None and self._saved[0] == change.digest()
            if not just_planned and self._current() == before:  # Terraform must still agree
                self._refuse_unless(plan, self._saved_plan(desired)[1])
            self._apply_in_stages(before, stages)
        elif self._saved is not None and self._saved[0] == change.digest():
            with stack_lock(self.stack.directory):
                self.stack.apply_saved(self._saved[1])
            self.stack.write_variables({**self.stack.variables(), **self._named(desired)})
            plan = change.desired["plan"]
        else:  # resumed or approved earlier: plan again, and only the approved plan goes
            plan = self._apply_variables(desired, change.desired["plan"])
        self.progress(variables=desired)
        self.inner.terraform_applied()
        return {"variables": desired, "plan": plan}

    def verify(self, record: Record) -> None:
        recorded = (record.after or {}).get("variables")
        if recorded:
            now = self._current()
            gaps = {
                f"terraform.{self.settings.variable(k)}": diff_entry(v, now.get(k))
                for k, v in recorded.items()
                if now.get(k) != v
            }
            if gaps:
                raise VerificationFailed.of(self.where, gaps)
        self.inner_holds(record)

    def inner_holds(self, record: Record) -> None:
        """AWS shows the step's end state: the step itself finds nothing left to change."""
        left = self.inner.plan(self.inner.observe())
        if left is not None:
            raise VerificationFailed.of(
                self.where,
                {"aws": diff_entry(record.change.summary if record.change else "", left.summary)},
            )

    def coalesce(self, records: list[Record]) -> list[Record]:
        """Variables overwrite one another, so one rollback undoes all: each variable back to
        its value before the oldest change that set it (changes may set different variables,
        e.g. Fargate ARM64 and then the EC2 group), in the stages of a staged change among
        them (the EC2 move's, undone in reverse, the other variables with the last)."""
        if not records:
            return []
        restored: dict[str, Any] = {}
        for record in records:  # newest first: an older before-state wins
            restored.update(self._before(record))
        staged = next((r for r in records if len(self._stages(r)) > 1), records[-1])
        return [staged.model_copy(update={"before": {"variables": restored}})]

    @staticmethod
    def _stages(record: Record) -> list[dict[str, Any]]:
        return (record.change.desired.get("stages") if record.change else None) or []

    @staticmethod
    def _before(record: Record) -> dict[str, Any]:
        return dict(
            (record.before or (record.change.before if record.change else {})).get("variables")
            or {}
        )

    def rollback(self, record: Record) -> None:
        """The variables from before, in one apply; a staged change's stages undone in
        reverse, each waited out before the next."""
        before = self._before(record)
        if not before:
            return
        stages = self._stages(record)
        if len(stages) > 1:
            undo = [{k: before[k] for k in stage if k in before} for stage in reversed(stages)]
            self._apply_in_stages(self._current(), [*undo, before])
        else:
            self._apply_variables(before, None)
        self.inner.terraform_applied()

    def verify_rollback(self, record: Record) -> None:
        with stack_lock(self.stack.directory):
            self.stack.select_workspace()
            pending, what = self.stack.drifted()
        if pending:
            raise VerificationFailed.of(
                self.where, {"terraform.plan": diff_entry("no changes", what)}
            )


OUTSIDE_TERRAFORM = (
    "NOT through Terraform: this step declares no Terraform variables yet, so it acts with "
    "the AWS API and the stack's next `terraform plan` shows its change as drift (its next "
    "apply would undo it) until the stack's code says the same; see terraform/README.md"
)


def outside_terraform(step: Step) -> bool:
    """A step the environment asks to run through Terraform that can only act with the API:
    the operator approving it must know the stack will not know of it."""
    return step.ctx.config.executor.via == "terraform" and not isinstance(step, TerraformStep)


def executed(step: Step) -> Step:
    """The step as the environment's executor runs it: through Terraform when the config
    says `executor: terraform` and the step declares its decisions, else the step itself."""
    if isinstance(step, TerraformStep) or step.ctx.config.executor.via != "terraform":
        return step
    if not step.terraform_decisions():
        return step
    return TerraformStep(step)
