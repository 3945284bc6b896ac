"""The Step lifecycle: observe -> plan -> apply -> verify, and rollback from a Record.

A migration step is one small class, like a Terraform resource or a Kubernetes reconciler:

- `observe()` reads the current state (read-only, cheap) into an Observation.
- `plan(obs)` says what would change, its monthly cost delta and its reversibility, or None
  when the environment is already where the config wants it.
- `apply(change)` makes the change idempotently (client tokens, check-before-create) and
  returns the after-state; the runner wraps it with the change's before-state in a Record.
- `verify(record)` proves the end state from AWS, not from memory; read-only.
- `rollback(record)` restores the before-state held in the Record; `verify_rollback(record)`
  proves it.

Steps never import Prefect's flows and never decide ordering: flows order steps, the generic
runner (phasegate.lifecycle and tasks.runner) runs them, checkpoints them and retries them.
A step gets its context at construction, so every verb sees the same clients and config.
"""

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig
from phasegate.cost import PriceTable, load_price_table, price_inventory
from phasegate.errors import PhasegateError
from phasegate.inventory import Inventory, discover
from phasegate.waiting import wait_until

CREATED_BY_TAG = "phasegate:created-by"
"""Tag on every resource a step creates (value: the step id): rollback and re-runs delete or
reuse only what carries it, never a look-alike someone made by hand."""


class StepRefused(PhasegateError):
    """The step will not proceed because doing so would break something; not retried."""


class VerificationFailed(PhasegateError):
    """AWS does not show the end state the step promised; names the resource and the gap."""


class Observation(BaseModel):
    """What a step read from AWS; steps subclass this with their own typed fields."""

    model_config = ConfigDict(extra="allow")


class Reversibility(BaseModel):
    """What an operator needs to know before approving a change."""

    restart_needed: bool
    rollback_possible: bool
    expected_disruption: str = Field(description="e.g. 'none', 'rolling task replacement'")


class Change(BaseModel):
    """A planned change: what, why it pays, how reversible, and the state it starts from."""

    step: str
    summary: str
    actions: list[str]
    monthly_cost_delta: float
    reversibility: Reversibility
    before: dict[str, Any] = Field(default_factory=dict)
    desired: dict[str, Any] = Field(default_factory=dict)


class Record(BaseModel):
    """The checkpoint and the rollback ledger entry of one step run."""

    environment: str
    phase: int
    step: str
    key: str
    outcome: Literal["applied", "unchanged"]
    change: Change | None = None
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    api_actions: list[str] = Field(default_factory=list)
    started_at: datetime
    finished_at: datetime
    approver: str | None = None
    comment: str | None = None

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


@dataclass
class StepContext:
    """Everything a step needs, made once per environment and shared across threads."""

    config: EnvironmentConfig
    clients: AwsClients
    prices: PriceTable | None = None
    logger: Any = field(default=None)

    @classmethod
    def for_environment(cls, config: EnvironmentConfig) -> "StepContext":
        return cls(
            config=config,
            clients=AwsClients(config.aws),
            prices=load_price_table(config.aws.region),
            logger=structlog.get_logger("phasegate.step").bind(environment=config.name),
        )

    def inventory(self) -> Inventory:
        """A fresh read of the environment (never cached: observe must see the present)."""
        return discover(self.config, self.clients)

    def monthly_cost(self, inventory: Inventory) -> float:
        """What `inventory` costs a month, so a plan can state its delta."""
        prices = self.prices or load_price_table(self.config.aws.region)
        return price_inventory(inventory, self.config, prices).total

    def cost_delta(self, before: Inventory, after: Inventory) -> float:
        return round(self.monthly_cost(after) - self.monthly_cost(before), 2)

    def wait(self, what: str, probe: Any, done: Any, timeout: float | None = None) -> Any:
        """Poll until done or the step's timeout; `what` names the resource and the state."""
        limit = timeout or self.config.phases.step_timeout_seconds
        return wait_until(f"{what} ({self.config.name})", probe, done, timeout=limit)


class Step(ABC):
    """One migration step. Subclasses set the class attributes and the five verbs."""

    id: ClassVar[str]
    phase: ClassVar[int]
    title: ClassVar[str]
    iam_actions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.log = ctx.logger.bind(phase=self.phase, step=self.id) if ctx.logger else None

    @property
    def clients(self) -> AwsClients:
        return self.ctx.clients

    def target(self) -> dict[str, Any]:
        """What the config asks of this step; part of the checkpoint key, so changing it re-runs."""
        return {}

    def target_hash(self) -> str:
        blob = json.dumps(self.target(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @abstractmethod
    def observe(self) -> Observation: ...

    @abstractmethod
    def plan(self, obs: Observation) -> Change | None: ...

    @abstractmethod
    def apply(self, change: Change) -> dict[str, Any]:
        """Make the change; return the after-state. Must be safe to call again after a crash."""

    @abstractmethod
    def verify(self, record: Record) -> None:
        """Raise VerificationFailed unless AWS shows the record's end state. Read-only."""

    @abstractmethod
    def rollback(self, record: Record) -> None:
        """Restore the before-state in `record`. Must be safe to call again after a crash."""

    def verify_rollback(self, record: Record) -> None:
        """Raise VerificationFailed unless AWS shows the before-state again. Read-only."""
        return None

    def change(self, summary: str, actions: list[str], cost_delta: float, **kw: Any) -> Change:
        """A Change of this step, for plan() implementations."""
        return Change(
            step=self.id, summary=summary, actions=actions, monthly_cost_delta=cost_delta, **kw
        )


def utcnow() -> datetime:
    return datetime.now(UTC)
