"""Environment configuration: the YAML contract of DESIGN.md as pydantic models.

A config file is the one place a user describes an environment, so every mistake in it must
come back as one line that names the file and the field, e.g.
``config/environments/x.yaml: targets.rds_instance_class: 'db.bogus' is not an RDS instance
class``, and nothing may be changed before the whole file is valid.
"""

import difflib
import functools
import re
import zoneinfo
from collections.abc import Hashable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from phasegate.aws_regions import AWS_REGIONS
from phasegate.config_phase2 import DatabaseTuning, Monitoring, Scaling
from phasegate.config_phase3 import Cdn, Regions, ServiceMarks, Spot
from phasegate.errors import ConfigError
from phasegate.home import config_dir, display_path, generated_environments_dir
from phasegate.terraform.settings import TerraformSettings

_FAMILY = r"[a-z]+\d+[a-z]*"
_SIZE = r"(nano|micro|small|medium|large|metal|\d*xlarge)"
RDS_CLASS = re.compile(rf"^db\.({_FAMILY})\.{_SIZE}$")
CACHE_NODE_TYPE = re.compile(rf"^cache\.({_FAMILY})\.{_SIZE}$")
EC2_INSTANCE_TYPE = re.compile(rf"^({_FAMILY})\.{_SIZE}$")
GRAVITON_FAMILY = re.compile(r"^[a-z]+\d+g[a-z]*$")
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
TIME_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d$"
_PATTERN_MEANING = {
    NAME_PATTERN: "a valid name (lowercase letters, digits and '-', at most 63, e.g. 'acme-prod')",
    TIME_PATTERN: "a 24-hour HH:MM time such as '02:00'",
}

ComputeTarget = Literal["ecs-fargate-arm64", "ec2-asg-graviton"]


class _Section(BaseModel):
    """Every section refuses unknown keys, so a typo is an error rather than a silent default."""

    model_config = ConfigDict(extra="forbid")


def _graviton(value: str, pattern: re.Pattern[str], kind: str, example: str) -> str:
    match = pattern.match(value)
    if not match:
        raise ValueError(f"{value!r} is not {kind}")
    if not GRAVITON_FAMILY.match(match.group(1)):
        raise ValueError(
            f"{value!r} is not a Graviton (ARM64) class, which this target needs (e.g. {example!r})"
        )
    return value


class AwsSettings(_Section):
    """How to reach the account: the standard credential chain unless a profile or role is set."""

    region: str = "us-east-1"
    profile: str | None = None
    role_arn: str | None = None
    endpoint_url: str | None = None

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value not in AWS_REGIONS:
            close = difflib.get_close_matches(value, sorted(AWS_REGIONS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{value!r} is not an AWS region{hint}")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[A-Za-z0-9.\-\[\]:]+(:\d+)?/?$", value):
            raise ValueError(f"{value!r} is not an http(s) URL such as http://127.0.0.1:4566")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$", value):
            raise ValueError(f"{value!r} is not an IAM role ARN")
        return value


class Discovery(_Section):
    """Resources carrying all these tags belong to the environment, and nothing else does."""

    tags: dict[str, str]

    @field_validator("tags")
    @classmethod
    def _not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("must name at least one tag, or discovery would match every resource")
        return value


class Targets(_Section):
    """Where phase 1 takes the environment; every class must be Graviton (ARM64)."""

    compute: ComputeTarget = "ecs-fargate-arm64"
    rds_instance_class: str = "db.t4g.micro"
    redis_node_type: str = "cache.t4g.micro"
    ec2_instance_type: str = "t4g.medium"
    asg_min: int = Field(default=1, ge=0)
    asg_max: int = Field(default=5, ge=1)

    @field_validator("rds_instance_class")
    @classmethod
    def _rds(cls, value: str) -> str:
        return _graviton(value, RDS_CLASS, "an RDS instance class", "db.t4g.micro")

    @field_validator("redis_node_type")
    @classmethod
    def _redis(cls, value: str) -> str:
        return _graviton(value, CACHE_NODE_TYPE, "an ElastiCache node type", "cache.t4g.micro")

    @field_validator("ec2_instance_type")
    @classmethod
    def _ec2(cls, value: str) -> str:
        return _graviton(value, EC2_INSTANCE_TYPE, "an EC2 instance type", "t4g.medium")

    @model_validator(mode="after")
    def _asg_bounds(self) -> "Targets":
        if self.asg_min > self.asg_max:
            raise ValueError(f"asg_min ({self.asg_min}) is above asg_max ({self.asg_max})")
        return self


class Usage(_Section):
    """Usage the price table cannot know: the cost model's assumptions for this environment."""

    nat_processed_gb_per_month: float = Field(default=500.0, ge=0)
    alb_lcu_average: float = Field(default=1.0, ge=0)
    # What `phasegate compare` prices Lambda and App Runner from; unset, their cells name
    # the field instead of guessing.
    requests_per_month: float | None = Field(default=None, ge=0)
    avg_duration_ms: float | None = Field(default=None, gt=0, le=900_000)
    lambda_memory_mb: int | None = Field(default=None, ge=128, le=10_240)
    active_hours_per_day: float | None = Field(default=None, ge=0, le=24)
    # What a cross-region read replica (regions.expand) streams to the second region a month;
    # unset, the plan prices the replica and says the transfer is not priced.
    replication_gb_per_month: float | None = Field(default=None, ge=0)


class Gates(_Section):
    """A health gate: checks evaluated every interval for count rounds (Argo Rollouts style)."""

    interval_seconds: float = Field(default=60.0, gt=0)
    count: int = Field(default=3, ge=1)
    failure_limit: int = Field(default=0, ge=0)
    inconclusive_limit: int = Field(default=1, ge=0)
    lookback_minutes: int = Field(default=5, ge=1)
    max_5xx_ratio: float = Field(default=0.01, ge=0, le=1)
    max_response_time_seconds: float = Field(default=0.5, gt=0)
    min_healthy_hosts: int = Field(default=1, ge=0)
    max_cpu_percent: float = Field(default=80.0, gt=0, le=100)
    # The damage a network change does shows here first: the app cut off from its database
    # (connections fall to 0), a cache that lost its clients' writes or its memory.
    min_db_connections: int = Field(default=1, ge=0)
    max_replica_lag_seconds: float = Field(default=300.0, gt=0)
    max_cache_evictions: float = Field(default=1000.0, ge=0)
    max_cache_memory_percent: float = Field(default=90.0, gt=0, le=100)
    on_failure: Literal["rollback", "pause"] = "rollback"


class Approvals(_Section):
    """Who must approve: None lets the tier decide (dev auto-approves, staging and prod do not)."""

    auto_approve: bool | None = None
    timeout_seconds: float = Field(default=3600.0, gt=0)


class Window(_Section):
    """A weekly maintenance window in the environment's timezone."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    start: str = Field(pattern=TIME_PATTERN)
    duration_minutes: int = Field(gt=0, le=7 * 24 * 60)


PHASES = (1, 2, 3)
# How long each phase is expected to take (its steps and its health gate), in minutes: a phase
# starts only if this much of its window is left. Phase 3 builds a second region, with an RDS
# cross-region read replica, which takes long.
DEFAULT_PHASE_ESTIMATES: dict[int, int] = {1: 30, 2: 15, 3: 60}
# Names under the zoneinfo folder that are not IANA time zones (or depend on the machine).
_NOT_IANA_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.lru_cache(maxsize=1)
def iana_time_zones() -> frozenset[str]:
    """The IANA time zone names this machine's tz database knows."""
    return frozenset(zoneinfo.available_timezones()) - _NOT_IANA_ZONES


def _iana_zone(value: str) -> str:
    zones = iana_time_zones()
    if value in zones:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
        else:
            return value
    by_lower = {zone.lower(): zone for zone in zones}
    close = [by_lower[value.lower()]] if value.lower() in by_lower else []
    close = close or difflib.get_close_matches(value, sorted(zones), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else " (e.g. 'Europe/Berlin')"
    raise ValueError(f"{value!r} is not an IANA time zone{hint}")


def _iso_date(value: str) -> str:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(f"{value!r} is not a date in the form YYYY-MM-DD, such as '2025-12-24'")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date: no such day in the calendar") from None
    return value


class Schedule(_Section):
    """When phases may run: weekly windows in an IANA zone, blackout dates, one window a phase.

    A phase with no entry in phase_windows runs any time (blackout dates still block it). The
    window arithmetic (DST gaps and overlaps, blackouts) lives in phasegate/schedule.py.
    """

    timezone: str = "UTC"
    windows: dict[str, Window] = Field(default_factory=dict)
    blackout_dates: list[Annotated[str, AfterValidator(_iso_date)]] = Field(default_factory=list)
    phase_windows: dict[int, str] = Field(default_factory=dict)
    phase_estimates: dict[int, Annotated[int, Field(ge=1, le=7 * 24 * 60)]] = Field(
        default_factory=dict, validate_default=True
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _iana_zone(value)

    @field_validator("phase_windows")
    @classmethod
    def _known_windows(cls, value: dict[int, str], info: ValidationInfo) -> dict[int, str]:
        windows = info.data.get("windows")  # absent when the windows themselves are invalid
        problems = []
        for phase, name in value.items():
            if phase not in PHASES:
                problems.append(f"phase {phase} does not exist; phases are 1, 2 and 3")
            elif windows is not None and name not in windows:
                defined = ", ".join(repr(w) for w in windows) or "none"
                close = difflib.get_close_matches(name, list(windows), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.append(
                    f"phase {phase} uses window {name!r}, which schedule.windows does not "
                    f"define ({hint}defined: {defined})"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("phase_estimates")
    @classmethod
    def _estimates_fit(cls, value: dict[int, int], info: ValidationInfo) -> dict[int, int]:
        unknown = [phase for phase in value if phase not in PHASES]
        if unknown:
            raise ValueError(f"phase {unknown[0]} does not exist; phases are 1, 2 and 3")
        merged = {**DEFAULT_PHASE_ESTIMATES, **value}
        windows = info.data.get("windows") or {}
        problems = []
        for phase, name in (info.data.get("phase_windows") or {}).items():
            window = windows.get(name)
            if window is not None and merged[phase] > window.duration_minutes:
                given = "" if phase in value else ", the default"
                problems.append(
                    f"phase {phase} is estimated at {merged[phase]} minutes{given}, which never "
                    f"fits in its window {name!r} ({window.duration_minutes} minutes); lengthen "
                    f"the window or set phase_estimates: {{{phase}: MINUTES}}"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return merged


WAIT_KINDS = (
    "rds_modify", "rds_snapshot", "elasticache_modify", "elasticache_snapshot", "ecs_deploy",
    "nat_create", "nat_delete", "rds_reboot", "cloudfront_deploy", "settle", "other",
)  # fmt: skip
"""The kinds of wait a step makes; each has its own deadline under `phases.wait_timeouts`."""

DEFAULT_WAIT_TIMEOUTS = {
    "rds_modify": 2400.0,  # an instance class change: host replacement, 10-30 min on AWS
    "rds_snapshot": 1800.0,
    "elasticache_modify": 2400.0,
    "elasticache_snapshot": 1800.0,
    "ecs_deploy": 1200.0,  # a rolling deployment behind the ALB, draining included
    "nat_create": 900.0,
    "nat_delete": 900.0,
    "settle": 1800.0,  # a re-run waiting out a nightly backup or a deployment in progress
    "rds_reboot": 1200.0,  # a reboot to apply a static parameter: a few minutes on AWS
    "cloudfront_deploy": 1800.0,  # a distribution created, changed or disabled: 5-15 min
    "other": 600.0,
}


class Phases(_Section):
    """Which phases run, what a failing step does to the steps before it, and how long to wait.

    Every wait has its own deadline by kind (`wait_timeouts`), shorter than the step's timeout,
    so the error that ends a stuck wait names what was awaited; the step timeout is the cap
    on the whole step, checked before every AWS call and every poll.
    """

    enabled: list[Literal[1, 2, 3]] = Field(default_factory=lambda: [1, 2, 3])
    on_step_failure: Literal["rollback", "stop"] = "rollback"
    step_timeout_seconds: float = Field(default=3600.0, gt=0)
    wait_timeouts: dict[str, float] = Field(default_factory=dict)

    @field_validator("wait_timeouts")
    @classmethod
    def _known_wait_kinds(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(WAIT_KINDS))
        if unknown:
            raise ValueError(f"unknown wait kind(s) {unknown}; known: {', '.join(WAIT_KINDS)}")
        bad = sorted(k for k, v in value.items() if not v > 0)
        if bad:
            raise ValueError(f"{bad}: a wait timeout must be a positive number of seconds")
        return value

    def wait_timeout(self, kind: str) -> float:
        """The deadline of one wait of `kind`, never past the step's own timeout."""
        limit = self.wait_timeouts.get(kind, DEFAULT_WAIT_TIMEOUTS.get(kind, 600.0))
        return min(limit, self.step_timeout_seconds)


class Executor(_Section):
    """Where checkpoints live, how much runs at once, and whether steps change AWS directly
    (`api`) or through the environment's Terraform stack (`terraform`; section `terraform:`).
    `executor: terraform` is short for `executor: {via: terraform}`."""

    via: Literal["api", "terraform"] = "api"
    result_storage: str | None = None
    max_workers: int = Field(default=4, ge=1)
    step_retries: int = Field(default=3, ge=0)
    retry_delay_seconds: float = Field(default=2.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"via": value} if isinstance(value, str) else value


class Nat(_Section):
    """How nat.remove treats what would lose egress without the NAT gateways."""

    accept_egress_loss: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="network interface ids (eni-...) or requester ids whose loss of egress "
        "the operator accepts; anything else that would lose it blocks nat.remove",
    )


class EnvironmentConfig(_Section):
    """One environment (tenant or stage): the whole contract of config/environments/NAME.yaml."""

    name: str = Field(pattern=NAME_PATTERN)
    tier: Literal["dev", "staging", "prod"]
    aws: AwsSettings = Field(default_factory=AwsSettings)
    discovery: Discovery
    targets: Targets = Field(default_factory=Targets)
    usage: Usage = Field(default_factory=Usage)
    gates: Gates = Field(default_factory=Gates)
    approvals: Approvals = Field(default_factory=Approvals)
    schedule: Schedule = Field(default_factory=Schedule)
    phases: Phases = Field(default_factory=Phases)
    nat: Nat = Field(default_factory=Nat)
    scaling: Scaling = Field(default_factory=Scaling)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    database: DatabaseTuning = Field(default_factory=DatabaseTuning)
    services: dict[str, ServiceMarks] = Field(default_factory=dict)
    spot: Spot = Field(default_factory=Spot)
    cdn: Cdn = Field(default_factory=Cdn)
    regions: Regions = Field(default_factory=Regions)
    executor: Executor = Field(default_factory=Executor)
    terraform: TerraformSettings = Field(default_factory=TerraformSettings)

    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _budget_tag_is_discovered(self) -> "EnvironmentConfig":
        tag = self.monitoring.budget_tag
        if tag is not None and tag not in self.discovery.tags:
            known = ", ".join(self.discovery.tags)
            raise ValueError(
                f"monitoring.budget_tag: {tag!r} is not one of discovery.tags ({known}); the "
                "budget filters the environment's cost by one of them"
            )
        return self

    @model_validator(mode="after")
    def _secondary_is_another_region(self) -> "EnvironmentConfig":
        if self.regions.secondary is not None and self.regions.secondary == self.aws.region:
            raise ValueError(
                f"regions.secondary: {self.regions.secondary!r} is aws.region, the primary; "
                "a second region must be another one"
            )
        return self

    @model_validator(mode="after")
    def _prod_never_auto_approves(self) -> "EnvironmentConfig":
        if self.tier == "prod" and self.approvals.auto_approve:
            raise ValueError("approvals.auto_approve: prod environments are never auto-approved")
        return self


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys, which plain YAML silently lets win."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            continue  # construct_mapping below reports it as a YAML error with its line
        if key in seen:
            raise ConfigError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                f"(first at line {seen[key]})"
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _field_path(loc: tuple[Any, ...]) -> str:
    """'targets.asg_min: ', or '' for whole-file checks, whose message names its own fields."""
    return ".".join(str(part) for part in loc) + ": " if loc else ""


def _describe(error: dict[str, Any], model_fields: list[str]) -> str:
    """One pydantic error as a sentence a platform engineer can act on."""
    kind, loc, value = error["type"], error["loc"], error.get("input")
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), model_fields, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown field{hint}"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"{value!r} is not one of {error['ctx']['expected']}"
    if kind == "value_error":  # our own validators' messages, already written for users
        return error["msg"].removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        pattern = error["ctx"]["pattern"]
        return f"{value!r} is not {_PATTERN_MEANING.get(pattern, f'matching {pattern}')}"
    if kind == "model_type":
        return f"expected a mapping of fields, got {value!r}"
    if kind == "string_type":  # YAML reads unquoted 14:30 as 870, 2025-12-24 as a date, yes as True
        return f"expected a string, got {value!r}; put the value in quotes"
    message = error["msg"][:1].lower() + error["msg"][1:]
    if " got " in message or ", not " in message:
        return message
    return f"{message}, got {value!r}"


def _known_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names valid at the error's location, for 'did you mean' hints."""
    annotation: Any = EnvironmentConfig
    for part in loc[:-1]:
        if get_origin(annotation) in (dict, list):  # part is a key or index: step into the value
            annotation = get_args(annotation)[-1]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            annotation = field.annotation if field else None
        else:
            return []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def read_yaml(path: Path, missing: str = "file not found") -> Any:
    """Read a YAML file phasegate owns (environments, price tables), refusing duplicate keys.

    Every problem is a ConfigError that starts with the file's path; `missing` says what a
    missing file means to the caller.
    """
    shown = display_path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{shown}: {missing}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown}: not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise ConfigError(f"{shown}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start and (not mark or start.line != mark.line):
            problem += f" ({context} at line {start.line + 1})"
        raise ConfigError(f"{shown}: YAML syntax error: {where}{problem}") from None


def parse_environment(path: Path) -> EnvironmentConfig:
    """Read and validate one environment file; a problem is a ConfigError naming file and field."""
    shown = display_path(path)
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{shown}: file is empty; expected an environment (name, tier, ...)")
    if not isinstance(data, dict):
        raise ConfigError(f"{shown}: expected a mapping of fields, got {type(data).__name__}")
    try:
        config = EnvironmentConfig.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{shown}: {_field_path(err['loc'])}{_describe(err, _known_fields(err['loc']))}"
            for err in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from None
    return config.model_copy(update={"source": path})


def environment_path(name_or_path: str) -> Path:
    """Resolve ENV: a path to a YAML file, or a name looked up where environments live.

    A sandbox-written file (under PHASEGATE_HOME) wins over the repository's, because only it
    knows the port the running sandbox listens on.
    """
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
        return Path(name_or_path)
    candidates = [
        generated_environments_dir() / f"{name_or_path}.yaml",
        config_dir() / "environments" / f"{name_or_path}.yaml",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(display_path(c.parent) for c in candidates)
    raise ConfigError(f"environment {name_or_path!r} not found: no {name_or_path}.yaml in {looked}")


def load_environment(name_or_path: str) -> EnvironmentConfig:
    """The validated config of ENV (a name or a path)."""
    return parse_environment(environment_path(name_or_path))
