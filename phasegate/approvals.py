"""Approval policy and the approval form's text: who must approve what, and what they see.

This is the core half of DESIGN.md "Approvals"; the Prefect half (pausing a flow run for the
form, resuming it) is tasks/approvals.py. Nothing here talks to Prefect.

Policy, decided from the environment's config (the authority) and the `--auto-approve` flag:

| tier    | `approvals.auto_approve` | asks per phase | `--auto-approve` flag            |
|---------|--------------------------|----------------|----------------------------------|
| dev     | null (default) or true   | no             | allowed (changes nothing)        |
| dev     | false                    | yes            | refused: config says always ask  |
| staging | null (default) or false  | yes            | refused: config must opt in      |
| staging | true                     | no             | allowed (changes nothing)        |
| prod    | null or false            | yes            | refused, always                  |

The flag never loosens what the config file says: auto-approval is opted into in the file,
where it is reviewed, not on a command line. The flag is accepted only where the file already
allows auto-approval, and refused everywhere else with a ConfigError (exit 2) naming the
environment, so a script that passes `--auto-approve` to staging or prod fails at once instead
of silently waiting an hour for an operator. (`tier: prod` with `auto_approve: true` is
already a config error.)

Prod asks once per phase and once more right before `nat.remove` (it cuts egress paths):
`extra_approval_steps`.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from phasegate.config import EnvironmentConfig
from phasegate.errors import ConfigError, PhasegateError
from phasegate.steps import Change, Record

# Steps that need an approval of their own, right before they run, per tier.
EXTRA_APPROVAL_STEPS: dict[str, frozenset[str]] = {
    "dev": frozenset(),
    "staging": frozenset(),
    "prod": frozenset({"nat.remove"}),
}

PlannedChanges = Sequence[tuple[str, Change | None]]


def _where(environment: str, phase: int, step: str | None) -> str:
    return f"{environment}: phase {phase}" + (f" step {step}" if step else "")


class ApprovalRejected(PhasegateError):
    """An operator said no; the run stopped before the change. Exit code 1."""

    def __init__(
        self, environment: str, phase: int, approver: str, comment: str, step: str | None = None
    ) -> None:
        self.environment = environment
        self.phase = phase
        self.step = step
        self.approver = approver
        self.comment = comment
        why = f": {comment!r}" if comment else " (no comment)"
        super().__init__(
            f"{_where(environment, phase, step)} rejected by {approver}{why}; "
            "stopped, nothing more changed"
        )


class ApprovalExpired(PhasegateError):
    """Nobody answered within approvals.timeout_seconds; the run stopped. Exit code 1."""

    def __init__(
        self, environment: str, phase: int, timeout_seconds: float, step: str | None = None
    ) -> None:
        self.environment = environment
        self.phase = phase
        self.step = step
        self.timeout_seconds = timeout_seconds
        super().__init__(
            f"{_where(environment, phase, step)}: no approval within {timeout_seconds:g} s; "
            "stopped, nothing more changed"
        )


def config_auto_approves(config: EnvironmentConfig) -> bool:
    """What the config file decides: an explicit auto_approve wins, else only dev auto-approves."""
    if config.tier == "prod":
        return False  # never, whatever the file says (config validation refuses true already)
    if config.approvals.auto_approve is not None:
        return config.approvals.auto_approve
    return config.tier == "dev"


def check_auto_approve_allowed(config: EnvironmentConfig, flag: bool) -> None:
    """Refuse `--auto-approve` where the config does not allow auto-approval (ConfigError)."""
    if not flag:
        return
    name, tier = config.name, config.tier
    if tier == "prod":
        raise ConfigError(
            f"{name}: --auto-approve is refused: {name} is a prod environment, and prod is "
            "never auto-approved; run without it and approve each phase"
        )
    if not config_auto_approves(config):
        if config.approvals.auto_approve is False:
            why = "its config sets approvals.auto_approve: false"
        else:
            why = f"a {tier} environment needs approvals.auto_approve: true in its config first"
        raise ConfigError(f"{name}: --auto-approve is refused: {why}")


@dataclass(frozen=True)
class ApprovalPolicy:
    """The approval decisions for one run of one environment."""

    environment: str
    tier: str
    auto_approve: bool
    extra_steps: frozenset[str]
    timeout_seconds: float

    @classmethod
    def for_run(
        cls, config: EnvironmentConfig, auto_approve_flag: bool = False
    ) -> "ApprovalPolicy":
        """The policy of a run; ConfigError if the flag is not allowed for this environment."""
        check_auto_approve_allowed(config, auto_approve_flag)
        return cls(
            environment=config.name,
            tier=config.tier,
            auto_approve=config_auto_approves(config),
            extra_steps=frozenset(extra_approval_steps(config)),
            timeout_seconds=config.approvals.timeout_seconds,
        )

    def needs_approval(self, phase: int) -> bool:
        """Whether `phase` waits for an operator before it changes anything."""
        _check_phase(phase)
        return not self.auto_approve

    def needs_step_approval(self, step: str) -> bool:
        """Whether `step` waits for an operator once more, right before it runs."""
        return step in self.extra_steps


def _check_phase(phase: int) -> None:
    if phase not in (1, 2, 3):
        raise ConfigError(f"phase {phase!r} does not exist; phases are 1, 2 and 3")


def needs_approval(config: EnvironmentConfig, phase: int, auto_approve_flag: bool = False) -> bool:
    """Whether `phase` of `config`'s environment waits for an operator.

    Raises ConfigError (exit 2) when `auto_approve_flag` is not allowed for the environment.
    """
    return ApprovalPolicy.for_run(config, auto_approve_flag).needs_approval(phase)


def extra_approval_steps(config: EnvironmentConfig) -> set[str]:
    """Step ids that need an approval of their own right before they run (prod: nat.remove;
    database.connections when it may reboot the database: `database.reboot: in-window`)."""
    rebooting = {"database.connections"} if config.database.reboot == "in-window" else set()
    return set(EXTRA_APPROVAL_STEPS[config.tier]) | rebooting


def pending_changes(changes: PlannedChanges) -> list[tuple[str, Change]]:
    """The steps that would change something (plan() returned a Change, not None)."""
    return [(step_id, change) for step_id, change in changes if change is not None]


def total_delta(changes: PlannedChanges) -> float:
    """The monthly cost delta of all planned changes, in USD, rounded to cents."""
    return round(sum(change.monthly_cost_delta for _, change in pending_changes(changes)), 2)


def money(delta: float) -> str:
    """'-$90.12' / '+$3.00' / '$0.00': a signed monthly amount in USD."""
    if round(delta, 2) == 0:
        return "$0.00"
    return f"{'-' if delta < 0 else '+'}${abs(delta):,.2f}"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def describe(
    config: EnvironmentConfig,
    phase: int,
    changes: PlannedChanges,
    *,
    step: str | None = None,
    note: str | None = None,
) -> str:
    """The approval form's description (markdown): every planned change, its monthly cost
    delta and reversibility, the total, the environment and its tier.

    `step` marks a step's own extra approval (prod: nat.remove); `changes` is then that step.
    `note` says why the run asks again (the plan changed since the last approval). Each
    change's digest is on the form: the approval binds to it, and a step whose change no
    longer has that digest stops before it applies anything.
    """
    _check_phase(phase)
    name, tier = config.name, config.tier
    what = f"step `{step}` of phase {phase}" if step else f"phase {phase}"
    pending = pending_changes(changes)
    total = total_delta(changes)
    lines = [
        f"# Approve {what} on `{name}`",
        "",
        f"- **Environment:** `{name}`",
        f"- **Tier:** {tier}",
        f"- **Region:** {config.aws.region}",
        f"- **Total monthly cost delta:** {money(total)} / month",
        f"- **Changes:** {len(pending)} of {len(changes)} steps change something",
        f"- **Answer within:** {config.approvals.timeout_seconds:g} s, or the run stops "
        "and changes nothing more",
    ]
    if step:
        lines.append(f"- This is a second approval: {tier} asks again right before `{step}` runs.")
    if note:
        lines += ["", f"**Asked again: {_cell(note)}**"]
    lines += [
        "",
        "| Step | Change | Monthly delta | Restart needed | Rollback possible "
        "| Expected disruption |",
        "|---|---|---:|---|---|---|",
    ]
    for step_id, change in changes:
        if change is None:
            lines.append(f"| `{step_id}` | nothing to do | $0.00 | no | - | none |")
            continue
        r = change.reversibility
        lines.append(
            f"| `{step_id}` | {_cell(change.summary)} | {money(change.monthly_cost_delta)} "
            f"| {_yes(r.restart_needed)} "
            f"| {_yes(r.rollback_possible)}{' (partly: see irreversible)' * bool(r.irreversible)} "
            f"| {_cell(r.expected_disruption)} |"
        )
    lines.append(f"| **Total** | | **{money(total)}** | | | |")
    for step_id, change in pending:
        lines += ["", f"## `{step_id}`: {change.summary}", ""]
        lines += [f"- {action}" for action in change.actions] or ["- (no actions listed)"]
        r = change.reversibility
        lines += [
            "",
            f"Monthly cost delta {money(change.monthly_cost_delta)}; "
            f"restart needed: {_yes(r.restart_needed)}; "
            f"rollback possible: {_yes(r.rollback_possible)}; "
            f"expected disruption: {r.expected_disruption}."
            # Only a change that acts is bound to its digest; a report (nat.assess) is not.
            + (f" Plan digest `{change.digest()}`." if change.actions else ""),
        ]
        if r.irreversible:
            lines += ["", "**Irreversible (rollback cannot bring these back):**", ""]
            lines += [f"- IRREVERSIBLE: {item}" for item in r.irreversible]
        if change.blockers:
            lines += ["", "**Blocked (the step refuses to run while these stand):**", ""]
            lines += [f"- BLOCKER: {item}" for item in change.blockers]
    lines += [
        "",
        "Answer in the Prefect UI (Resume on the paused run; approver required) or with "
        "`phasegate approve RUN_ID --approver NAME [--reject] [--comment TEXT]`.",
    ]
    return "\n".join(lines) + "\n"


def stamp(record: Record, approver: str, comment: str) -> Record:
    """A copy of `record` carrying who approved its change and what they said."""
    return record.model_copy(update={"approver": approver, "comment": comment or None})


def failed_gate_description(config: EnvironmentConfig, phase: int, gate_markdown: str) -> str:
    """The form an operator answers when a phase's health gate failed and config says pause."""
    return (
        f"## Health gate failed: {config.name} ({config.tier}), phase {phase}\n\n"
        "The phase is applied but its health gate did not pass. **Approve** to keep the phase "
        "as it is and go on; **reject** to roll the phase back now.\n\n" + gate_markdown
    )
