"""Phase 2's config sections: `scaling`, `monitoring` and `database`, as pydantic models.

They live apart from phasegate.config so that each section's rules sit in one short module;
phasegate.config mounts them on EnvironmentConfig. Like every section they refuse unknown keys,
and a bad value (min above max, a utilisation outside 1-100, an email that is not one, a budget
of zero) comes back as one line naming the file and the field, before anything is changed.
"""

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
HTTPS_URL = re.compile(r"^https://[A-Za-z0-9.\-]+(:\d+)?(/\S*)?$")


class _Section(BaseModel):
    """Unknown keys are errors, so a typo never becomes a silent default."""

    model_config = ConfigDict(extra="forbid")


class Scaling(_Section):
    """`scaling.enable`: target tracking for the ECS service (or the EC2 Auto Scaling group).

    ECS keeps `min_capacity`-`max_capacity` tasks (the seed's 2-6); the EC2 group keeps
    `targets.asg_min`-`asg_max` instances (the seed's 1-5, phase 1's bounds). Both track
    average CPU and the ALB's requests per target. Scale-in waits `scale_in_cooldown_seconds`
    after a scaling activity, so a short dip does not remove capacity needed a minute later.
    """

    min_capacity: int = Field(default=2, ge=1)
    max_capacity: int = Field(default=6, ge=1)
    cpu_target_percent: float = Field(default=60.0, ge=1, le=100)
    requests_per_target: float = Field(default=1000.0, gt=0)
    scale_in_cooldown_seconds: int = Field(default=300, ge=0, le=3600)
    scale_out_cooldown_seconds: int = Field(default=60, ge=0, le=3600)
    instance_warmup_seconds: int = Field(default=300, ge=0, le=3600)

    @model_validator(mode="after")
    def _bounds(self) -> "Scaling":
        if self.min_capacity > self.max_capacity:
            raise ValueError(
                f"min_capacity ({self.min_capacity}) is above max_capacity ({self.max_capacity})"
            )
        return self


class Thresholds(_Section):
    """When each phase 2 alarm fires; each is evaluated over `evaluation_minutes` one-minute
    periods, so a single bad minute does not page anyone."""

    evaluation_minutes: int = Field(default=3, ge=1, le=60)
    target_5xx_per_minute: float = Field(default=5.0, ge=0)
    elb_5xx_per_minute: float = Field(default=5.0, ge=0)
    p99_response_seconds: float = Field(default=1.0, gt=0)
    unhealthy_hosts: int = Field(default=0, ge=0)
    compute_cpu_percent: float = Field(default=80.0, ge=1, le=100)
    rds_cpu_percent: float = Field(default=80.0, ge=1, le=100)
    rds_free_storage_gb: float = Field(default=2.0, gt=0)
    rds_connections_percent: float = Field(default=80.0, ge=1, le=100)
    redis_memory_percent: float = Field(default=80.0, ge=1, le=100)
    redis_evictions_per_minute: float = Field(default=0.0, ge=0)
    log_errors_per_minute: float = Field(default=10.0, ge=0)


class Monitoring(_Section):
    """`monitoring.enable`: who is alerted, the monthly budget, and the alarm thresholds.

    `monthly_budget_usd` unset means the environment's priced monthly total when the step
    plans (after phase 1) plus `budget_margin_percent`. The budget counts the cost carrying
    the cost-allocation tag `budget_tag` (default: the first discovery tag), which must be
    activated in the billing console for AWS Budgets to filter on it.
    """

    emails: list[str] = Field(default_factory=list)
    https_endpoints: list[str] = Field(default_factory=list)
    monthly_budget_usd: float | None = Field(default=None, gt=0)
    budget_margin_percent: float = Field(default=20.0, ge=0, le=1000)
    budget_tag: str | None = None
    log_group: str | None = None
    thresholds: Thresholds = Field(default_factory=Thresholds)

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        bad = [e for e in value if not EMAIL.match(e)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an email address such as 'ops@example.com'")
        return value

    @field_validator("https_endpoints")
    @classmethod
    def _https(cls, value: list[str]) -> list[str]:
        bad = [u for u in value if not HTTPS_URL.match(u)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an https:// URL SNS can deliver to")
        return value


class DatabaseTuning(_Section):
    """`database.connections`: the PostgreSQL parameters phase 2 sets, and reboot policy.

    max_connections = floor(class memory in MiB / `memory_per_connection_mib`), between 20
    and 5000: with the default 9.09 MiB that is RDS's own default formula
    (DBInstanceClassMemory / 9531392), written down as a number, so it shows in plans, follows
    a resize and can be tuned here. max_connections is static: RDS applies it at the next
    reboot, which phasegate makes only with `reboot: in-window` (inside the phase's window,
    with its own approval); otherwise the instance is reported pending-reboot.
    """

    memory_per_connection_mib: float = Field(default=9.09, gt=0)
    idle_in_transaction_session_timeout_ms: int = Field(default=60_000, ge=0)
    tcp_keepalives_idle_seconds: int = Field(default=60, ge=0)
    log_min_duration_statement_ms: int = Field(default=1000, ge=-1)
    reboot: Literal["never", "in-window"] = "never"
