"""Phase 3's config sections: `services` (what may run on Spot), `spot`, `cdn` and `regions`.

They live apart from phasegate.config so that each section's rules sit in one short module;
phasegate.config mounts them on EnvironmentConfig. Like every section they refuse unknown keys,
and a bad value (a critical service marked for Spot, Spot types of different sizes, a path
pattern CloudFront cannot match) comes back as one line naming the file and the field, before
anything is changed.
"""

import difflib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from phasegate.aws_regions import AWS_REGIONS

SAME_SIZE_GRAVITON = {
    "t4g.medium": ["t4g.medium", "c6g.large", "c7g.large"],  # 2 vCPU, 4 GiB
    "t4g.large": ["t4g.large", "m6g.large", "m7g.large"],  # 2 vCPU, 8 GiB
    "t4g.xlarge": ["t4g.xlarge", "m6g.xlarge", "m7g.xlarge"],  # 4 vCPU, 16 GiB
    "t4g.2xlarge": ["t4g.2xlarge", "m6g.2xlarge", "m7g.2xlarge"],  # 8 vCPU, 32 GiB
}
"""Graviton instance types of the same vCPU and memory as each phase 1 type: a Spot group
that may launch any of them draws on several Spot pools, so one pool's reclaim does not empty
it, and every instance still fits the same task sizes."""


class _Section(BaseModel):
    """Unknown keys are errors, so a typo never becomes a silent default."""

    model_config = ConfigDict(extra="forbid")


class ServiceMarks(_Section):
    """How one ECS service may be run. Every service is critical unless marked otherwise:
    Spot capacity is reclaimed with two minutes' warning, so only a service that tolerates
    losing tasks (`critical: false`) may ask for it (`spot: true`)."""

    critical: bool = True
    spot: bool = False

    @model_validator(mode="after")
    def _critical_never_spot(self) -> "ServiceMarks":
        if self.spot and self.critical:
            raise ValueError(
                "spot: true on a service marked critical (the default); Spot capacity is "
                "reclaimed with two minutes' warning, so mark it critical: false or drop spot"
            )
        return self


class Spot(_Section):
    """`spot.enable`: how much of a non-critical service stays on on-demand capacity.

    ECS: the service's capacity provider strategy keeps `fargate_base` tasks on FARGATE and
    splits the rest `fargate_weight`:`fargate_spot_weight` between FARGATE and FARGATE_SPOT.
    EC2: the Auto Scaling group keeps `on_demand_base` instances on-demand and launches the
    rest on Spot (price-capacity-optimized) from `instance_types`, by default phase 1's type
    and its same-size Graviton peers (SAME_SIZE_GRAVITON).
    """

    fargate_base: int = Field(default=1, ge=0, le=100000)
    fargate_weight: int = Field(default=1, ge=0, le=1000)
    fargate_spot_weight: int = Field(default=3, ge=1, le=1000)
    on_demand_base: int = Field(default=1, ge=0)
    instance_types: list[str] | None = None

    @field_validator("instance_types")
    @classmethod
    def _several_types(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) < 2:
            raise ValueError(
                "name at least two instance types: a Spot group of one type draws on one "
                "Spot pool, and that pool's reclaim takes all its Spot instances at once"
            )
        return value


class Cdn(_Section):
    """`cdn.enable`: a CloudFront distribution in front of the ALB (opt in: `enabled: true`).

    Requests matching `static_paths` are cached (AWS's managed CachingOptimized policy: a day
    by default, or what the app's Cache-Control says); everything else goes to the API
    uncached, with all headers, cookies and query strings. `price_class` limits the
    edge locations (and the price): PriceClass_100 is North America and Europe.
    """

    enabled: bool = False
    static_paths: list[str] = Field(default_factory=lambda: ["/static/*", "/assets/*"])
    price_class: Literal["PriceClass_100", "PriceClass_200", "PriceClass_All"] = "PriceClass_100"

    @field_validator("static_paths")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if not p.startswith("/") or len(p) > 255 or p == "/*"]
        if bad:
            raise ValueError(
                f"{bad[0]!r} is not a CloudFront path pattern for static assets such as "
                "'/static/*' (it starts with '/', and '/*' is the uncached default)"
            )
        if len(set(value)) != len(value):
            raise ValueError("a path pattern is listed twice")
        return value


class Regions(_Section):
    """`regions.expand`: a standby copy of the environment in `secondary` (opt in: set it).

    The second region gets phase 1's shape (public subnets, no NAT), an RDS cross-region read
    replica of the primary database, a Redis replication group, the same compute target and
    an ALB; `record_name` in the Route 53 zone `hosted_zone` (a zone name such as
    `example.com.` or an id such as `Z0123...`) answers with the primary's ALB while its health
    check (`health_check_path`) passes and with the second region's otherwise. The replica is
    promoted only by `phasegate failover ENV --to REGION`, never by a phase.
    """

    secondary: str | None = None
    hosted_zone: str | None = None
    record_name: str | None = None
    health_check_path: str = Field(default="/health", pattern=r"^/[^\s]*$")

    @field_validator("secondary")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        if value is not None and value not in AWS_REGIONS:
            close = difflib.get_close_matches(value, sorted(AWS_REGIONS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{value!r} is not an AWS region{hint}")
        return value

    @model_validator(mode="after")
    def _zone_and_name_with_secondary(self) -> "Regions":
        if self.secondary is not None and (self.hosted_zone is None or self.record_name is None):
            raise ValueError(
                "secondary is set, so hosted_zone and record_name are needed too: the "
                "failover records that send traffic to the second region live there"
            )
        return self
