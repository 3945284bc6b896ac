"""The wave's approval on Prefect: the fleet run pauses once for a whole wave's plans.

The fleet plans each environment of the wave that needs an approval (read-only), publishes
the wave's form (phasegate/wave_approval.py) as an artifact and pauses its own flow run for an
`Approval`, answered in the UI or with `phasegate approve FLEET_RUN_ID`. The fleet run is not
started from a deployment, so it pauses (and keeps polling) rather than suspends: its state
(which environments ran, which slots it holds) lives in its process.
"""

import math

from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from pydantic import ValidationError

from phasegate.approvals import ApprovalExpired, ApprovalRejected, PlannedChanges
from phasegate.config import EnvironmentConfig
from phasegate.errors import PhasegateError
from phasegate.logs import get_logger
from phasegate.wave_approval import WaveApproval, acting_digests, wave_description
from tasks.approvals import Approval, pause_key, slug
from tasks.runner import planned_changes

POLL_SECONDS = 2.0


def wave_plans(
    members: list[EnvironmentConfig], phase: int
) -> list[tuple[EnvironmentConfig, PlannedChanges]]:
    """Each member's plan of `phase` now, read-only, for the wave's form."""
    return [(config, planned_changes(str(config.source), phase)) for config in members]


def ask_wave(
    wave: str, phase: int, plans: list[tuple[EnvironmentConfig, PlannedChanges]]
) -> dict[str, WaveApproval]:
    """Pause the fleet run until an operator answers the wave's form; environment name ->
    its WaveApproval. ApprovalRejected or ApprovalExpired (naming the wave) otherwise.

    The timeout is the shortest `approvals.timeout_seconds` among the wave's environments:
    no environment waits longer than its own config allows.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("ask_wave must be called from inside the fleet's flow run")
    run = context.flow_run
    timeout = max(1, math.ceil(min(c.approvals.timeout_seconds for c, _ in plans)))
    description = wave_description(wave, phase, plans, timeout)
    where = f"wave {wave}"
    log = get_logger("approvals", wave=wave, phase=phase)
    create_markdown_artifact(
        markdown=description,
        key=slug(f"approval-wave-{wave}-phase-{phase}")[:64],
        description=f"Plan awaiting approval: wave {wave} phase {phase}",
    )
    log.info(
        "approval.requested",
        flow_run_id=str(run.id),
        environments=[c.name for c, _ in plans],
        timeout_seconds=timeout,
        answer_with=f"phasegate approve {run.id} --approver NAME [--reject] [--comment TEXT]",
    )
    form = Approval.with_initial_data(description=description, approved=False)
    try:
        answer = pause_flow_run(
            wait_for_input=form,
            timeout=timeout,
            poll_interval=POLL_SECONDS,
            key=pause_key(phase, f"wave-{wave}", description),
        )
    except FlowPauseTimeout:
        log.warning("approval.expired", timeout_seconds=timeout)
        raise ApprovalExpired(where, phase, timeout) from None
    except ValidationError as exc:
        raise PhasegateError(
            f"{where}: phase {phase}: the approval of fleet run {run.id} came back without a "
            f"valid answer ({exc.error_count()} problem(s)); no environment of the wave started"
        ) from None
    if not answer.approved:
        log.warning("approval.rejected", approver=answer.approver, comment=answer.comment)
        raise ApprovalRejected(where, phase, answer.approver, answer.comment)
    log.info("approval.granted", approver=answer.approver, comment=answer.comment)
    return {
        config.name: WaveApproval(
            wave=wave,
            approver=answer.approver,
            comment=answer.comment,
            digests=acting_digests(changes),
        )
        for config, changes in plans
    }
