"""The health gate as a Prefect task: evaluate, log every check, publish the table.

The task returns the GateResult whatever the verdict: a failed gate is an answer, not an
error, and the flow decides what it means (roll the phase back or pause for the operator, as
`gates.on_failure` says). It raises only when the gate cannot run at all (bad config, AWS
unreachable during discovery).
"""

import re

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from phasegate.aws import AwsClients
from phasegate.config import load_environment
from phasegate.gates import GateResult, GateRound, HealthGate, render_markdown
from phasegate.logs import get_logger


def artifact_key(environment: str) -> str:
    """The artifact key of an environment's gate: 'gate-NAME', in Prefect's [a-z0-9-] alphabet."""
    key = re.sub(r"[^a-z0-9-]+", "-", f"gate-{environment}".lower())
    return re.sub(r"-{2,}", "-", key).strip("-")


@task(name="health-gate", task_run_name="gate {env}", cache_policy=NO_CACHE)
def health_gate(env: str) -> GateResult:
    """Run ENV's health gate (a name or a path); log each check and publish the table."""
    config = load_environment(env)
    log = get_logger("phasegate.gates", environment=config.name)

    def log_round(current: GateRound) -> None:
        for check in current.checks:
            bound = log.bind(resource=check.resource)
            emit = bound.info if check.status == "pass" else bound.warning
            emit(
                "gate check",
                round=current.number,
                check=check.name,
                status=check.status,
                value=check.value,
                threshold=check.threshold,
                detail=check.detail,
            )

    log.info("gate started", count=config.gates.count, interval=config.gates.interval_seconds)
    result = HealthGate(config, AwsClients(config.aws), on_round=log_round).evaluate()
    (log.info if result.passed else log.warning)(
        "gate " + ("passed" if result.passed else "failed"),
        rounds=len(result.rounds),
        failures=result.failures,
        inconclusives=result.inconclusives,
        reason=result.reason,
    )
    create_markdown_artifact(
        markdown=render_markdown(result),
        key=artifact_key(config.name),
        description=f"Health gate of {config.name}: {result.verdict}",
    )
    return result
