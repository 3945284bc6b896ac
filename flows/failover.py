"""Fail over to the second region: an explicitly approved promotion of its read replica.

Never part of a phase or of the migration flow (phasegate/failover.py says why). It asks
through the same approval form as a phase or a rollback, but more strictly: it is irreversible,
so it asks unless the config allows auto-approval *and* the operator passed `--auto-approve`
(dev only; prod always asks, and refuses the flag). It holds the environment's lock, so no
phase run or rollback (which would delete the replica) runs beside it.
"""

from prefect import flow

from phasegate.approvals import ApprovalPolicy
from phasegate.config import load_environment
from phasegate.failover import FAILOVER_PHASE, FAILOVER_STEP, plan_failover, promote
from tasks.approvals import Approval, request_approval
from tasks.locks import environment_lock


@flow(name="failover", flow_run_name="{env}: failover to {region}")
def failover(env: str, region: str, auto_approve: bool = False) -> str:
    """Promote the replica in `region`; one line saying what happened."""
    config = load_environment(env)
    policy = ApprovalPolicy.for_run(config, auto_approve)
    with environment_lock(config):
        plan = plan_failover(config, region)  # again under the lock: what is true now
        if plan.state == "promoted":
            return (
                f"{config.name}: {plan.replica} in {region} was promoted by an earlier "
                "failover; nothing to do"
            )
        if auto_approve and policy.auto_approve:
            approval = Approval(
                approved=True,
                approver="phasegate",
                comment=f"auto-approved (--auto-approve, {config.tier} policy)",
            )
        else:
            approval = request_approval(
                config,
                FAILOVER_PHASE,
                [(FAILOVER_STEP, plan.change)],
                step=FAILOVER_STEP,
                note="FAILOVER, IRREVERSIBLE:\n" + "\n".join(f"- {line}" for line in plan.lines()),
            )
        record = promote(config, plan, approval.approver, approval.comment)
    return (
        f"{config.name}: {plan.replica} in {region} promoted to a standalone database "
        f"(status {record.after['status']}, approved by {approval.approver}); "
        f"it no longer replicates from {plan.primary}"
    )
