"""What a health gate decides and reports: one check's measurement, a round, the verdict.

Shared by the gate's evaluation (phasegate.gates), its checks (phasegate.gate_checks) and its
rendering (phasegate.gate_render), so none of them imports another for its data.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from phasegate.errors import PhasegateError

Status = Literal["pass", "fail", "inconclusive"]


class GateFailed(PhasegateError):
    """A health gate failed: the environment is not healthy enough to go on; exit code 1."""

    exit_code = 1

    @classmethod
    def from_result(cls, result: "GateResult") -> "GateFailed":
        return cls(f"health gate of {result.environment} failed: {result.reason}")


class CheckResult(BaseModel):
    """One measurement: one check of one resource in one round."""

    name: str = Field(description="e.g. 'alb-5xx-ratio', 'rds-cpu', 'alarms'")
    resource: str = Field(description="what was checked: an ALB, a target group, a database...")
    status: Status
    value: float | str | None = Field(default=None, description="None when there was no data")
    threshold: str = Field(description="the condition a pass needs, e.g. '<= 0.01'")
    detail: str = ""


class GateRound(BaseModel):
    """Every check once, at `at`."""

    number: int
    at: datetime
    checks: list[CheckResult]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failures(self) -> int:
        return sum(1 for c in self.checks if c.status == "fail")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def inconclusives(self) -> int:
        return sum(1 for c in self.checks if c.status == "inconclusive")


class GateResult(BaseModel):
    """The verdict of one gate, with every round it ran and why it decided so.

    `failures` and `inconclusives` are totals over every check and round, for the report; the
    verdict compares each check's own counts with the limits (see the module docstring).
    """

    environment: str
    verdict: Literal["pass", "fail"]
    rounds: list[GateRound]
    failures: int
    inconclusives: int
    reason: str
    count: int = Field(description="the rounds configured; fewer ran if the gate failed early")
    started_at: datetime
    finished_at: datetime

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


def fmt_value(value: float | str | None) -> str:
    """A measured value as reports show it: 'no data' for None, 4 significant digits."""
    if value is None:
        return "no data"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
