"""Each wait has its own deadline by kind, and the step's timeout really stops a step: at its
next AWS call or poll, not after an hour behind a task timeout Prefect cannot enforce."""

import time
from typing import Any

import pytest

from phasegate.config import EnvironmentConfig
from phasegate.deadline import StepTimeout
from phasegate.errors import WaitTimeout
from phasegate.lifecycle import StepFailed, execute
from phasegate.steps import StepContext
from tasks.database import DatabaseResize


def context(config: EnvironmentConfig, **phases: Any) -> StepContext:
    return StepContext.for_environment(
        config.model_copy(update={"phases": config.phases.model_copy(update=phases)})
    )


class NeverSettles(DatabaseResize):
    """RDS that says `modifying` forever."""

    def _require(self, identifier: str) -> dict[str, Any]:
        return {**super()._require(identifier), "DBInstanceStatus": "modifying"}


def test_a_wait_ends_at_its_own_deadline_naming_what_it_waited_for(
    seeded: EnvironmentConfig,
) -> None:
    ctx = context(seeded, step_timeout_seconds=3600, wait_timeouts={"rds_modify": 0.3})
    with pytest.raises(StepFailed) as failed:
        execute(NeverSettles(ctx), key="t")
    cause = failed.value.cause
    assert type(cause) is WaitTimeout
    assert "timed out after 0s waiting for RDS demo-db available" in str(cause)


class KeepsCalling(DatabaseResize):
    """An apply that calls AWS in a loop and never waits: only the step deadline stops it."""

    def apply(self, change: Any) -> dict[str, Any]:
        while True:
            self.clients.rds.describe_db_instances(DBInstanceIdentifier="demo-db")
            time.sleep(0.05)


def test_the_step_timeout_stops_a_step_at_its_next_aws_call(seeded: EnvironmentConfig) -> None:
    ctx = context(seeded, step_timeout_seconds=0.5)
    with pytest.raises(StepFailed) as failed:
        execute(KeepsCalling(ctx), key="t")
    assert isinstance(failed.value.cause, StepTimeout)
    assert "demo: step database.resize ran past its 0.5s timeout" in str(failed.value)
