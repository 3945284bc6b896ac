"""What a migration run reports: per phase, its outcome, cost before and after, and its gate."""

from typing import Literal

from pydantic import BaseModel, Field

from phasegate.errors import PhasegateError

PhaseStatus = Literal[
    "completed", "skipped", "failed", "rolled back", "rejected", "expired", "refused"
]  # refused: the window guard (phasegate/schedule.py) did not let the phase start


class PhaseOutcome(BaseModel):
    """One phase of one migration run."""

    phase: int
    status: PhaseStatus
    detail: str = ""
    cost_before: dict[str, float] = Field(default_factory=dict)
    cost_after: dict[str, float] = Field(default_factory=dict)
    gate: Literal["pass", "fail", "not run"] = "not run"
    gate_reason: str = ""
    approver: str | None = None


class MigrationReport(BaseModel):
    """The whole run: the phases in the order they ran."""

    environment: str
    phases: list[PhaseOutcome] = Field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return all(p.status in ("completed", "skipped") for p in self.phases)


class MigrationFailed(PhasegateError):
    """A phase did not complete; carries the report of everything that ran."""

    def __init__(self, report: MigrationReport) -> None:
        self.report = report
        last = report.phases[-1]
        super().__init__(f"{report.environment}: phase {last.phase} {last.status}: {last.detail}")
