"""One approval for a whole wave (`fleet.approve_per: wave`): the form and what it binds to.

A platform team approving a prod wave of twenty environments wants to read one form, not
twenty. The fleet plans every environment of the wave that needs an approval, puts every plan
and its monthly cost delta on one form, and, once it is approved, hands each environment's run
a `WaveApproval`: who approved, and the digest of each change approved for that environment.
The run re-plans as always and takes the wave's answer only when its plan still has exactly
those digests; anything else (AWS changed since, a step already applied) is asked of a person
on the environment's own form, as without the wave. Nothing here talks to Prefect (the pause
is tasks/wave_approval.py).

The wave's answer also stands for the extra approval a tier asks right before a step (prod:
`nat.remove`) when that step's change, with its digest, was on the wave's form: the form says
so. A step whose change differs from the one shown asks on its own.
"""

from collections.abc import Sequence

from pydantic import BaseModel, Field

from phasegate.approvals import (
    PlannedChanges,
    describe,
    extra_approval_steps,
    money,
    pending_changes,
    total_delta,
)
from phasegate.config import EnvironmentConfig
from phasegate.steps import Change

WavePlans = Sequence[tuple[EnvironmentConfig, PlannedChanges]]


class WaveApproval(BaseModel):
    """The wave's answer as one environment's run receives it (a flow parameter)."""

    wave: str = Field(min_length=1)
    approver: str = Field(min_length=1)
    comment: str = ""
    digests: dict[str, str] = Field(default_factory=dict)  # step id -> approved digest

    def covers(self, changes: PlannedChanges) -> bool:
        """True when the steps that act now are exactly the approved ones, same digests."""
        return acting_digests(changes) == self.digests

    def covers_step(self, step_id: str, change: Change | None) -> bool:
        return change is not None and self.digests.get(step_id) == change.digest()


def acting_digests(changes: PlannedChanges) -> dict[str, str]:
    """Step id -> digest of each planned change that acts (has actions)."""
    return {step: change.digest() for step, change in changes if change and change.actions}


def wave_description(wave: str, phase: int, plans: WavePlans, timeout_seconds: float) -> str:
    """The wave's form (markdown): a table of every environment's changes and monthly cost
    delta, the wave's total, then each environment's full plan as its own form shows it."""
    total = round(sum(total_delta(changes) for _, changes in plans), 2)
    lines = [
        f"# Approve phase {phase} on wave `{wave}`: {len(plans)} environments",
        "",
        f"- **Total monthly cost delta:** {money(total)} / month",
        f"- **Answer within:** {timeout_seconds:g} s, or no environment of the wave starts",
        "- One answer for every environment below. Each run applies only if its plan still "
        "has the digests shown here; one that changed asks on its own form.",
        "",
        "| Environment | Tier | Region | Changes | Monthly delta | Also approves |",
        "|---|---|---|---:|---:|---|",
    ]
    for config, changes in plans:
        extra = sorted(s for s, _ in pending_changes(changes) if s in extra_approval_steps(config))
        lines.append(
            f"| `{config.name}` | {config.tier} | {config.aws.region} "
            f"| {len(acting_digests(changes))} | {money(total_delta(changes))} "
            f"| {', '.join(f'`{s}`' for s in extra) or '-'} |"
        )
    lines.append(f"| **Total** | | | | **{money(total)}** | |")
    for config, changes in plans:
        body = describe(config, phase, changes).split("\n")
        lines += ["", "---", "", *("#" + line if line.startswith("#") else line for line in body)]
    return "\n".join(lines).rstrip() + "\n"
