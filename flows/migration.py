"""The migration: per phase, plan -> approval -> phase -> health gate -> keep or roll back.

The whole run holds the environment (one run per environment), phases not built yet are
reported as skipped, and the first phase that does not complete stops the run: later phases
never start on an environment whose last phase failed its gate.

Before each phase the window guard (phasegate/schedule.py) decides: outside its maintenance
window the run waits for it (or, with `wait=False`, the phase is refused); on a blackout
date, or with too little of the window left for the phase's estimate, it is refused. The
phase's approval must come by the latest start that still fits in the window.
"""

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.phase import run_phase
from flows.rollback import rollback_phase
from phasegate.approvals import (
    ApprovalExpired,
    ApprovalPolicy,
    ApprovalRejected,
    failed_gate_description,
)
from phasegate.config import EnvironmentConfig, load_environment
from phasegate.errors import PhaseFailed
from phasegate.fleet import outcome_rows, outcomes_key
from phasegate.gates import GateResult, render_markdown
from phasegate.logs import get_logger
from phasegate.render import migration_markdown
from phasegate.report import MigrationFailed, MigrationReport, PhaseOutcome
from phasegate.schedule import (
    WindowDecision,
    check_window,
    describe_instant,
    wait_for_window,
    zone,
)
from phasegate.steps import Change, PlanBlocked, PlanChanged
from phasegate.wave_approval import WaveApproval
from tasks.approvals import Approval, approval_gate, approved_digests, ask_operator
from tasks.gates import health_gate
from tasks.locks import environment_lock
from tasks.registry import stages
from tasks.reporting import cost_snapshot, savings_section
from tasks.runner import confirm_plan, plan_for_run


def _window_guard(config: EnvironmentConfig, phase: int, wait: bool) -> WindowDecision:
    """Wait for the phase's window if allowed; the final decision (run or refuse), logged."""
    log = get_logger("schedule", environment=config.name, phase=phase)

    def waiting(decision: WindowDecision) -> None:
        log.info("window.wait", until=str(decision.wait_until), reason=decision.message)

    decision = wait_for_window(config, phase, wait=wait, on_wait=waiting)
    if decision.action == "refuse":
        log.warning("window.refused", reason=decision.message)
    else:
        log.info("window.open", reason=decision.message)
    return decision


def _phase(
    config: EnvironmentConfig,
    env: str,
    phase: int,
    auto_approve: bool,
    wait: bool = True,
    wave: WaveApproval | None = None,
) -> PhaseOutcome:
    if not stages(phase):
        return PhaseOutcome(phase=phase, status="skipped", detail="no steps built yet")
    window = _window_guard(config, phase, wait)
    if window.action == "refuse":
        return PhaseOutcome(phase=phase, status="refused", detail=window.message)
    configured_timeout = config.approvals.timeout_seconds
    before = cost_snapshot(env)
    outcome = PhaseOutcome(phase=phase, status="completed", cost_before=before)
    policy = ApprovalPolicy.for_run(config, auto_approve)
    timeout = window.approval_timeout(configured_timeout)
    try:
        changes, approval = _approved_plan(config, env, phase, policy, auto_approve, timeout, wave)
        outcome.approver = approval.approver
        late = check_window(config, phase, wait=False)  # planning and approval took time
        if late.action == "refuse":
            outcome.status, outcome.detail = "refused", late.message
            outcome.cost_after = before
            return outcome
        approve_step = _StepApprovals(
            config, phase, policy, dict(changes), auto_approve, window, wave
        )
        run_phase(env, phase, approval, approve_step, approved_digests(changes))
    except ApprovalRejected as exc:
        outcome.status, outcome.detail = "rejected", str(exc)
    except ApprovalExpired as exc:
        outcome.status, outcome.detail = "expired", str(exc)
        if timeout < configured_timeout and window.approval_deadline is not None:
            tz = zone(config.schedule)
            outcome.detail += (
                f"; it had to come by {describe_instant(window.approval_deadline, tz)} for "
                f"the phase to fit in window {window.window!r}"
            )
    except PlanBlocked as exc:
        outcome.status, outcome.detail = "refused", str(exc)
    except PlanChanged as exc:
        outcome.status, outcome.detail = "failed", str(exc)
    except PhaseFailed as exc:
        rolled = config.phases.on_step_failure == "rollback"
        outcome.status, outcome.detail = ("rolled back" if rolled else "failed"), str(exc)
    else:
        gate = health_gate(env)
        outcome.gate, outcome.gate_reason = gate.verdict, gate.reason
        if not gate.passed:
            _after_failed_gate(config, env, phase, gate, outcome)
    outcome.cost_after = cost_snapshot(env)
    return outcome


MAX_PLAN_CHANGES = 3
"""How often a run asks again because AWS changed between approval and apply."""


def _approved_plan(
    config: EnvironmentConfig,
    env: str,
    phase: int,
    policy: ApprovalPolicy,
    auto_approve: bool,
    timeout: float,
    wave: WaveApproval | None = None,
) -> tuple[list[tuple[str, Change | None]], Approval]:
    """The plan and its approval, confirmed against AWS right before the phase runs.

    What is applied must be what was approved: after the approval every changing step is
    planned again; if AWS changed meanwhile (by hand, say), a person is asked again with the
    difference named on the form, and an automatically approved run stops (PlanChanged,
    nothing changed). A fleet's wave approval (`wave`) answers for a person only while the
    plan has exactly the digests approved on the wave's form.
    """
    changed: str | None = None
    for attempt in range(MAX_PLAN_CHANGES):
        changes = plan_for_run(env, phase, attempt)
        blocked = [change for _, change in changes if change is not None and change.blockers]
        if blocked:
            raise PlanBlocked.of(config.name, blocked[0])
        if wave and policy.needs_approval(phase) and wave.covers(changes):
            approval = _wave_answer(wave, config, phase)
        elif any(_changes_anything(change) for _, change in changes):
            if wave and changed is None:
                changed = f"the plan differs from the one wave {wave.wave} approved"
            approval = approval_gate(
                config, phase, changes, auto_approve_flag=auto_approve, timeout_seconds=timeout,
                note=changed,
            )  # fmt: skip
        else:  # e.g. a run resumed after its phase was applied: there is nothing to approve
            approval = Approval(approved=True, approver="phasegate", comment="nothing to change")
        try:
            confirm_plan(env, phase, changes)
        except PlanChanged as exc:
            if not policy.needs_approval(phase):
                raise
            changed = str(exc)
            continue
        return changes, approval
    raise PlanChanged(f"{changed}; it changed {MAX_PLAN_CHANGES} times, so the run stopped")


class _StepApprovals:
    """Only a step the policy singles out (prod: nat.remove) is approved on its own; the
    others carry the phase's approval."""

    def __init__(
        self,
        config: EnvironmentConfig,
        phase: int,
        policy: ApprovalPolicy,
        by_step: dict[str, Change | None],
        auto_approve: bool,
        window: WindowDecision,
        wave: WaveApproval | None = None,
    ) -> None:
        self.config, self.phase, self.policy = config, phase, policy
        self.by_step, self.auto_approve, self.window = by_step, auto_approve, window
        self.wave = wave

    def needed(self, step_id: str) -> bool:
        return self.policy.needs_step_approval(step_id) and _changes_anything(self.by_step[step_id])

    def __call__(self, step_id: str) -> Approval | None:
        if not self.needed(step_id):
            return None
        if self.wave and self.wave.covers_step(step_id, self.by_step[step_id]):
            return _wave_answer(self.wave, self.config, self.phase, step_id)
        timeout = self.window.step_approval_timeout(self.config.approvals.timeout_seconds)
        return approval_gate(
            self.config, self.phase, [(step_id, self.by_step[step_id])],
            auto_approve_flag=self.auto_approve, step=step_id, timeout_seconds=timeout,
        )  # fmt: skip


def _wave_answer(
    wave: WaveApproval, config: EnvironmentConfig, phase: int, step: str | None = None
) -> Approval:
    """The wave's approval as this run's, logged as any approval is."""
    get_logger("approvals", environment=config.name, phase=phase, step=step).info(
        "approval.granted", approver=wave.approver, wave=wave.wave
    )
    comment = f"approved for wave {wave.wave}" + (f": {wave.comment}" if wave.comment else "")
    return Approval(approved=True, approver=wave.approver, comment=comment)


def _changes_anything(change: Change | None) -> bool:
    """A planned change with actions; a read-only step's report (no actions) needs no approval."""
    return change is not None and bool(change.actions)


def _after_failed_gate(
    config: EnvironmentConfig, env: str, phase: int, gate: GateResult, outcome: PhaseOutcome
) -> None:
    """Roll the phase back at once, or (gates.on_failure: pause) let the operator decide."""
    failed = f"health gate failed ({gate.reason})"
    if config.gates.on_failure == "pause":
        try:
            decision = ask_operator(
                config, phase, failed_gate_description(config, phase, render_markdown(gate)),
                step="gate", subject=f"Health gate failed: {config.name} phase {phase}",
                key=f"gate-decision-phase-{phase}",
            )  # fmt: skip
        except ApprovalExpired:
            outcome.status = "failed"
            outcome.detail = (
                f"{failed}; nobody decided in time, so it is left as it is: "
                f"`phasegate rollback {config.name} --phase {phase}` undoes it"
            )
            return
        except ApprovalRejected as rejected:
            failed = f"{failed}; {rejected}"
        else:
            outcome.detail = f"{failed}; kept by {decision.approver}: {decision.comment}"
            return
    rollback_phase(env, phase)
    outcome.status = "rolled back"
    outcome.detail = f"{failed}; the phase was rolled back"


@flow(name="migration", flow_run_name="{env}: migration")
def migration(
    env: str,
    phases: list[int] | None = None,
    auto_approve: bool = False,
    wait: bool = True,
    wave_approval: WaveApproval | None = None,
) -> MigrationReport:
    """Run `phases` (default: the config's enabled phases) on `env`, gated and approved.

    `wait=False` (--no-wait) refuses a phase outside its window instead of waiting for it.
    `wave_approval` is a fleet's answer for the environment's whole wave (one phase).
    """
    config = load_environment(env)
    ApprovalPolicy.for_run(config, auto_approve)  # refuses prod --auto-approve before anything
    report = MigrationReport(environment=config.name)
    with environment_lock(config):
        for phase in phases or config.phases.enabled:
            report.phases.append(_phase(config, env, phase, auto_approve, wait, wave_approval))
            if not report.succeeded:
                break
    create_markdown_artifact(
        markdown=migration_markdown(report) + "\n" + savings_section(env),
        key=f"migration-{config.name}"[:64],
    )
    # The same outcomes as data, for a fleet reading this run from the API (flows/fleet.py).
    create_table_artifact(table=outcome_rows(report.phases), key=outcomes_key(config.name))
    if not report.succeeded:
        raise MigrationFailed(report)
    return report
