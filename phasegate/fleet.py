"""A fleet: many environments migrated under rate control, as SSM Automation and Argo do it.

This module is the fleet's policy, with no Prefect in it: which environments a selector picks
(`select_environments`), which wave each belongs to (`waves_of`), when too many failures stop
the fleet (`FleetSettings.error_threshold`), and what the fleet reports (`FleetSummary`). The
flow that carries it out on Prefect workers is flows/fleet.py.

Settings come from the `fleet:` section of `config/fleet.yaml` (optional; defaults below):

    fleet:
      max_concurrency: 10      # environments in flight at once, across every worker
      max_errors: "10%"        # or a count; once exceeded, no new environment starts
      bake_minutes: 30         # after a wave passed, before the next one starts
      approve_per: wave        # or environment (default): who needs approval is asked once
      waves:                   # default: one wave per tier, dev, staging, prod
        - {name: canary, select: ["name=acme-canary"]}
        - {name: dev, select: ["tier=dev"]}
      work_pool: phasegate
      concurrency_limit: phasegate-fleet
"""

import fnmatch
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from phasegate.config import (
    EnvironmentConfig,
    _describe,
    _field_path,
    parse_environment,
    read_yaml,
)
from phasegate.errors import ConfigError
from phasegate.home import config_dir, display_path, generated_environments_dir

TIERS = ("dev", "staging", "prod")
SELECTOR_KEYS = ("name", "tier", "region", "tag.KEY")


class Wave(BaseModel):
    """A named group of environments that starts only after the previous group passed."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    select: list[str] = Field(min_length=1)

    @field_validator("select")
    @classmethod
    def _selectors_parse(cls, value: list[str]) -> list[str]:
        for selector in value:
            parse_selector(selector)
        return value


def _tier_waves() -> list[Wave]:
    return [Wave(name=tier, select=[f"tier={tier}"]) for tier in TIERS]


class FleetSettings(BaseModel):
    """The `fleet:` section: rate control for a fleet run."""

    model_config = ConfigDict(extra="forbid")

    max_concurrency: int = Field(default=10, ge=1, le=500)
    max_errors: int | str = 0
    bake_minutes: float = Field(default=0.0, ge=0)
    approve_per: Literal["environment", "wave"] = "environment"
    waves: list[Wave] = Field(default_factory=_tier_waves, min_length=1)
    work_pool: str = Field(default="phasegate", min_length=1)
    concurrency_limit: str = Field(default="phasegate-fleet", pattern=r"^[a-z0-9-]+$")
    poll_seconds: float = Field(default=2.0, gt=0, le=60)

    @field_validator("max_errors")
    @classmethod
    def _count_or_percentage(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"expected a count >= 0 or a percentage like '10%', got {value}")
            return value
        number = value.strip().removesuffix("%")
        if not value.strip().endswith("%") or not number.replace(".", "", 1).isdigit():
            raise ValueError(f"expected a count >= 0 or a percentage like '10%', got {value!r}")
        if float(number) > 100:
            raise ValueError(f"a percentage is at most 100%, got {value!r}")
        return value.strip()

    def error_threshold(self, total: int) -> int:
        """How many failed environments the fleet tolerates; one more stops it.

        A percentage is of the environments selected, rounded down (10% of 12 tolerates 1).
        """
        if isinstance(self.max_errors, int):
            return self.max_errors
        return math.floor(float(self.max_errors.removesuffix("%")) * total / 100)


def fleet_config_path() -> Path:
    return config_dir() / "fleet.yaml"


def load_fleet_settings(path: Path | None = None) -> FleetSettings:
    """The `fleet:` section of `path` (default config/fleet.yaml); defaults when it is absent."""
    explicit = path is not None
    path = path or fleet_config_path()
    if not explicit and not path.is_file():
        return FleetSettings()
    shown = display_path(path)
    data = read_yaml(path) or {}
    if not isinstance(data, dict) or set(data) - {"fleet"}:
        raise ConfigError(f"{shown}: expected one section, fleet:, got {sorted(data)!r}")
    try:
        return FleetSettings.model_validate(data.get("fleet") or {})
    except ValidationError as exc:
        known = list(FleetSettings.model_fields)
        lines = [
            f"{shown}: fleet.{_field_path(err['loc'])}{_describe(err, known)}"
            for err in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from None


# -- selectors -------------------------------------------------------------------------------


def parse_selector(selector: str) -> tuple[str, str]:
    """'tier=dev' -> ('tier', 'dev'); the value is a shell glob ('name=acme-*')."""
    key, sep, pattern = selector.partition("=")
    key = key.strip()
    if not sep or not pattern or not key:
        raise ConfigError(f"selector {selector!r}: expected KEY=PATTERN, e.g. tier=dev")
    if key not in ("name", "tier", "region") and not (key.startswith("tag.") and len(key) > 4):
        raise ConfigError(
            f"selector {selector!r}: unknown key {key!r}; known: {', '.join(SELECTOR_KEYS)}"
        )
    return key, pattern


def matches(config: EnvironmentConfig, selectors: Iterable[str]) -> bool:
    """True when every selector matches the environment (they are ANDed)."""
    for selector in selectors:
        key, pattern = parse_selector(selector)
        if key == "name":
            value = config.name
        elif key == "tier":
            value = config.tier
        elif key == "region":
            value = config.aws.region
        else:
            value = config.discovery.tags.get(key.removeprefix("tag."))
        if value is None or not fnmatch.fnmatchcase(value, pattern):
            return False
    return True


def environment_dirs() -> list[Path]:
    """Where environment files live, as `load_environment` looks them up (sandbox first)."""
    return [generated_environments_dir(), config_dir() / "environments"]


def select_environments(
    selectors: Sequence[str], directories: Sequence[Path] | None = None
) -> list[EnvironmentConfig]:
    """Every environment file in `directories` that all `selectors` match, by name.

    A name found in two directories counts once, the first directory winning (as for
    `load_environment`). Any invalid file is an error naming it: a fleet never silently
    leaves out an environment it could not read.
    """
    for selector in selectors:
        parse_selector(selector)
    found: dict[str, EnvironmentConfig] = {}
    for directory in directories or environment_dirs():
        for path in sorted(Path(directory).glob("*.yaml")):
            config = parse_environment(path)
            found.setdefault(config.name, config)
    chosen = [c for name, c in sorted(found.items()) if matches(c, selectors)]
    if not chosen:
        looked = ", ".join(display_path(Path(d)) for d in directories or environment_dirs())
        raise ConfigError(
            f"no environment matches {' and '.join(selectors) or '(no selector)'} in {looked}"
        )
    return chosen


def waves_of(
    environments: Sequence[EnvironmentConfig], waves: Sequence[Wave]
) -> list[tuple[str, list[EnvironmentConfig]]]:
    """Environments grouped into the configured waves, in order; empty waves left out.

    An environment belongs to the first wave whose selectors match it; one that matches no
    wave is an error naming it, never silently skipped.
    """
    grouped: dict[str, list[EnvironmentConfig]] = {wave.name: [] for wave in waves}
    for config in environments:
        wave = next((w for w in waves if matches(config, w.select)), None)
        if wave is None:
            raise ConfigError(
                f"environment {config.name} (tier {config.tier}) is in no fleet wave; "
                f"fleet.waves: {', '.join(w.name for w in waves)}"
            )
        grouped[wave.name].append(config)
    return [(name, members) for name, members in grouped.items() if members]


def parse_phases(text: str) -> list[int]:
    """'1,2' -> [1, 2]; a clear error for anything else."""
    try:
        phases = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ConfigError(f"--phases {text!r}: expected phase numbers like 1,2") from None
    if not phases or any(p not in (1, 2, 3) for p in phases):
        raise ConfigError(f"--phases {text!r}: phases are 1, 2 and 3")
    return phases


# -- what a fleet reports --------------------------------------------------------------------

FleetResult = Literal[
    "completed", "failed", "rolled back", "rejected", "expired", "refused", "crashed",
    "cancelled", "skipped", "not started", "awaiting approval", "running",
]  # fmt: skip


class PhaseRow(BaseModel):
    """One phase of one environment's run, as the migration flow publishes it (a table
    artifact, `outcomes_key`), so a fleet on another machine can read it from the API."""

    phase: int
    status: str
    detail: str = ""
    gate: str = "not run"
    cost_before: float | None = None
    cost_after: float | None = None


def outcomes_key(environment: str) -> str:
    """The artifact key of an environment's phase outcomes, in Prefect's [a-z0-9-] alphabet."""
    return f"outcomes-{environment.lower().replace('_', '-')}"[:64]


def outcome_rows(phases: Iterable[Any]) -> list[dict[str, Any]]:
    """A MigrationReport's phases as table rows (PhaseRow fields): totals, not components."""
    return [
        PhaseRow(
            phase=p.phase,
            status=p.status,
            detail=p.detail,
            gate=p.gate,
            cost_before=p.cost_before.get("Total"),
            cost_after=p.cost_after.get("Total"),
        ).model_dump()
        for p in phases
    ]


class EnvironmentOutcome(BaseModel):
    """One environment of a fleet run."""

    environment: str
    tier: str
    wave: str
    result: FleetResult = "not started"
    phase_reached: int | None = None
    gate: str = "not run"
    detail: str = ""
    cost_before: float | None = None
    cost_after: float | None = None
    flow_runs: list[str] = Field(default_factory=list)

    @property
    def monthly_saving(self) -> float:
        if self.cost_before is None or self.cost_after is None:
            return 0.0
        return self.cost_before - self.cost_after

    def record_phase(self, row: PhaseRow) -> None:
        """Fold one phase's outcome in: the first before, the latest after."""
        self.phase_reached = row.phase
        self.gate = row.gate
        self.detail = row.detail
        if self.cost_before is None:
            self.cost_before = row.cost_before
        if row.cost_after is not None:
            self.cost_after = row.cost_after


class FleetSummary(BaseModel):
    """The whole fleet run: each environment's outcome, and why the fleet stopped if it did."""

    selectors: list[str]
    phases: list[int]
    max_concurrency: int
    error_threshold: int
    environments: list[EnvironmentOutcome]
    stopped: str = ""

    @property
    def failed(self) -> list[EnvironmentOutcome]:
        passed = ("completed", "skipped", "not started")
        return [e for e in self.environments if e.result not in passed]

    @property
    def succeeded(self) -> bool:
        return not self.stopped and all(
            e.result in ("completed", "skipped") for e in self.environments
        )

    @property
    def monthly_saving(self) -> float:
        return sum(e.monthly_saving for e in self.environments)

    def rows(self) -> list[list[str]]:
        """Header plus one row per environment: the table and the artifact share it."""
        rows = [["environment", "wave", "phase", "result", "gate", "before $/mo", "after $/mo"]]
        for e in self.environments:
            rows.append(
                [
                    e.environment,
                    e.wave,
                    str(e.phase_reached or "-"),
                    e.result,
                    e.gate,
                    _money(e.cost_before),
                    _money(e.cost_after),
                ]
            )
        return rows

    def failure_lines(self) -> list[str]:
        return [f"{e.environment}: {e.result}: {e.detail}" for e in self.failed]

    def markdown(self) -> str:
        header, *body = self.rows()
        lines = [
            f"# Fleet: {' and '.join(self.selectors) or 'every environment'}, "
            f"phases {', '.join(map(str, self.phases))}",
            "",
            f"max_concurrency {self.max_concurrency}, tolerated failures {self.error_threshold}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in body),
            "",
            f"**Total monthly saving: ${self.monthly_saving:,.2f}**",
        ]
        if self.stopped:
            lines += ["", f"**Stopped:** {self.stopped}"]
        if self.failed:
            lines += ["", "## Failed", "", *(f"- {line}" for line in self.failure_lines())]
        return "\n".join(lines) + "\n"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"
