"""The Step lifecycle: observe -> plan -> apply -> verify, and rollback from a Record.

A migration step is one small class, like a Terraform resource or a Kubernetes reconciler:

- `observe()` reads the current state (read-only, cheap) into an Observation.
- `plan(obs)` says what would change, its monthly cost delta and its reversibility, or None
  when the environment is already where the config wants it.
- `apply(change)` makes the change idempotently (client tokens, check-before-create) and
  returns the after-state; the runner wraps it with the change's before-state in a Record.
- `verify(record)` proves the end state from AWS, not from memory; read-only. It raises
  `Settling` while AWS is still converging toward the recorded state (a deployment in
  progress, an instance modifying or backing up) and `VerificationFailed` (with a
  field-by-field `diff`) when AWS shows what the Record did not leave: drift.
- `rollback(record)` restores the before-state held in the Record; `verify_rollback(record)`
  proves it. A Record of a half-applied change (a run killed mid-apply) holds only the
  sub-actions that happened (`Step.progress`), so rollback must restore from what it finds.
- `after = (...)` names the steps this one depends on; a phase runs its steps as a DAG.

Steps never import Prefect's flows and never decide ordering: flows order steps, the generic
runner (phasegate.lifecycle and tasks.runner) runs them, checkpoints them and retries them.
A step gets its context at construction, so every verb sees the same clients and config.
"""

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from phasegate import deadline
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
    """AWS does not show the end state the step promised (drift); names the resource and the gap.

    `diff` holds the gap field by field, `{"demo-db.instance_class": {"recorded": ...,
    "found": ...}}`, so the drift Record in the ledger says exactly what changed.
    """

    def __init__(self, message: str, diff: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.diff = diff or {}

    def __reduce__(self) -> Any:
        return type(self), (str(self), self.diff)

    @classmethod
    def of(cls, where: str, diff: dict[str, Any]) -> "VerificationFailed":
        """The drift `diff` (field -> recorded/found) as one error, `where` naming its step."""
        gaps = "; ".join(f"{k} is {v['found']}, recorded {v['recorded']}" for k, v in diff.items())
        return cls(f"{where}: {gaps}", diff)


class Settling(PhasegateError):
    """AWS is converging toward the recorded state (modifying, backing-up, deploying): wait."""


class PlanBlocked(StepRefused):
    """A planned change names blockers: showing it is fine, applying it would break something."""

    @classmethod
    def of(cls, where: str, change: "Change") -> "PlanBlocked":
        return cls(
            f"{where}: {change.step} refused, nothing changed: " + "; ".join(change.blockers)
        )


class PlanChanged(PhasegateError):
    """What a step would apply now differs from what the operator approved; nothing changed."""


def diff_entry(recorded: Any, found: Any) -> dict[str, Any]:
    """One field of a drift diff."""
    return {"recorded": recorded, "found": found}


Verdict = Literal["holds", "settling", "drifted"]


class Observation(BaseModel):
    """What a step read from AWS; steps subclass this with their own typed fields."""

    model_config = ConfigDict(extra="allow")


class Reversibility(BaseModel):
    """What an operator needs to know before approving a change."""

    restart_needed: bool
    rollback_possible: bool
    expected_disruption: str = Field(description="e.g. 'none', 'rolling task replacement'")
    irreversible: list[str] = Field(
        default_factory=list,
        description="what rollback cannot bring back (e.g. released Elastic IPs), one per line",
    )


class Change(BaseModel):
    """A planned change: what, why it pays, how reversible, and the state it starts from."""

    step: str
    summary: str
    actions: list[str]
    monthly_cost_delta: float
    reversibility: Reversibility
    before: dict[str, Any] = Field(default_factory=dict)
    desired: dict[str, Any] = Field(default_factory=dict)
    blockers: list[str] = Field(
        default_factory=list,
        description="why the change must not be applied as things stand, one line each; "
        "a change with blockers is shown by plan and refused by run",
    )

    def digest(self) -> str:
        """What an approval binds to: the before-state and the desired state, hashed."""
        blob = json.dumps(
            {"step": self.step, "before": self.before, "desired": self.desired},
            sort_keys=True,
            default=str,
        ).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


Outcome = Literal["intent", "progress", "applied", "unchanged", "drift", "rolled_back"]
"""What a ledger entry records:

- intent: a change written down before apply (the plan it will carry out);
- progress: sub-actions of that change done so far (what a half-applied rollback undoes);
- applied: the change made and verified; unchanged: the step found nothing to do;
- drift: AWS no longer shows what the entry before it left (`diff` says how);
- rolled_back: the changes since the last rollback were undone (`after` lists them).
"""


class Record(BaseModel):
    """One entry of a step's append-only ledger chain; each names the one before it.

    An applied or unchanged entry is also the step's checkpoint: a re-run skips the step
    while the chain's head holds in AWS.
    """

    environment: str
    phase: int
    step: str
    key: str
    outcome: Outcome
    seq: int = 0
    previous: int | None = None
    target_hash: str = ""
    change: Change | None = None
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    diff: dict[str, Any] = Field(default_factory=dict)
    detail: str = ""
    api_actions: list[str] = Field(default_factory=list)
    started_at: datetime
    finished_at: datetime
    approver: str | None = None
    comment: str | None = None

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


_one_reading: ContextVar[dict[str, Inventory] | None] = ContextVar(
    "phasegate_one_reading", default=None
)


@contextmanager
def one_reading() -> Iterator[None]:
    """Within it, every step of a read-only pass sees one discovery of its environment.

    A plan of a whole phase (the run's plan, its confirmation, `phasegate plan`) observes each
    step in turn and applies nothing, so the steps that each read the whole environment
    (nat.assess, nat.remove) would discover the same account twice in one pass (18 reads
    each on the demo topology). Outside such a pass, and so for every step's execution and
    verification, `StepContext.inventory` reads AWS afresh.
    """
    token = _one_reading.set({})
    try:
        yield
    finally:
        _one_reading.reset(token)


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
        """A fresh read of the environment (observe must see the present), shared only by
        the steps of one read-only pass (`one_reading`)."""
        shared = _one_reading.get()
        if shared is None:
            return discover(self.config, self.clients)
        if self.config.name not in shared:
            shared[self.config.name] = discover(self.config, self.clients)
        return shared[self.config.name]

    def monthly_cost(self, inventory: Inventory) -> float:
        """What `inventory` costs a month, so a plan can state its delta."""
        prices = self.prices or load_price_table(self.config.aws.region)
        return price_inventory(inventory, self.config, prices).total

    def cost_delta(self, before: Inventory, after: Inventory) -> float:
        return round(self.monthly_cost(after) - self.monthly_cost(before), 2)

    def wait(self, what: str, probe: Any, done: Any, kind: str = "other") -> Any:
        """Poll until done or the deadline of a `kind` wait (config `phases.wait_timeouts`),
        never past the running step's own deadline; `what` names the resource and the state."""
        limit = deadline.capped(self.config.phases.wait_timeout(kind), f"waiting for {what}")
        try:
            return wait_until(
                f"{what} ({self.config.name})", probe, done, timeout=limit, max_overshoot=0.1
            )
        except deadline.StepTimeout as exc:  # the step's deadline struck mid-wait: say where
            raise deadline.StepTimeout(f"{exc}, waiting for {what}") from None


class Step(ABC):
    """One migration step. Subclasses set the class attributes and the five verbs."""

    id: ClassVar[str]
    phase: ClassVar[int]
    title: ClassVar[str]
    iam_actions: ClassVar[tuple[str, ...]] = ()
    after: ClassVar[tuple[str, ...]] = ()
    """Ids of the steps of the same phase that must finish before this one starts."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.log = ctx.logger.bind(phase=self.phase, step=self.id) if ctx.logger else None
        self._on_progress: Callable[[dict[str, Any]], None] | None = None

    def progress(self, **done: Any) -> None:
        """Journal sub-actions of the running apply (merged into the Record's `after`), so a
        run killed half-way can be rolled back exactly as far as it got."""
        if self._on_progress is not None:
            self._on_progress(done)

    @property
    def clients(self) -> AwsClients:
        return self.ctx.clients

    def target(self) -> dict[str, Any]:
        """What the config asks of this step; part of the checkpoint key, so changing it re-runs."""
        return {}

    def terraform_decisions(self) -> dict[str, Any]:
        """The migration decisions (phasegate.terraform.settings.DECISIONS) this step's change
        stands for, with the values the config asks: with `executor: terraform` the step is
        made by setting these variables and applying a saved plan. {}: the step has no
        Terraform form and always calls AWS itself."""
        return {}

    def terraform_prerequisites(self) -> dict[str, Any]:
        """The decisions of the steps before this one that its Terraform resources stand on
        (regions.expand's ALB in the VPC its network step makes). A phase is planned and
        approved before its first step runs; while these are not in the stack yet, the
        step's plan is taken as what its own decisions add on top of them, which is the plan
        it makes once they are, so the approval still holds when its turn comes."""
        return {}

    def terraform_stages(self) -> list[dict[str, Any]]:
        """`terraform_decisions` split into the applies they need, in order. One apply for
        most steps; a change that is only safe in order (nat.remove: the service out of the
        private subnets before the gateways go, back in only after they return) is applied
        stage by stage, `terraform_stage_applied` waited out after each, and rolled back in
        reverse."""
        decisions = self.terraform_decisions()
        return [decisions] if decisions else []

    def terraform_blockers(self, change: Change) -> list[str]:
        """What stops the step's `change` (its own plan) from being made through Terraform,
        which the API executor would have fixed with calls of its own behind the stack."""
        return []

    def terraform_applied(self) -> None:
        """After the step's last apply (and a rollback's): what it does with the API that
        Terraform keeps no record of, so it is no change behind the stack's back: an
        operation, not configuration (database.connections' reboot in the window)."""
        return None

    def terraform_stage_applied(self) -> None:
        """Wait until what the last stage's apply started has settled in AWS, before the next
        stage (or the verification) reads it. Terraform itself waits for most resources."""
        return None

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
        """Return when AWS shows the record's end state; raise Settling while it converges
        toward it, VerificationFailed (drift, with a diff) when it shows something else."""

    @abstractmethod
    def rollback(self, record: Record) -> None:
        """Restore the before-state in `record`. Must be safe to call again after a crash,
        and on a half-applied Record whose `after` holds only the sub-actions that happened."""

    def coalesce(self, records: list[Record]) -> list[Record]:
        """The Records a rollback undoes, newest first, from the applied ones since the last
        rollback (newest first). A step whose changes overwrite one another (a size changed
        twice) can merge them into one that restores the oldest before-state directly."""
        return records

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


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists as {"a.b.0.c": leaf}, so a difference names its field."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, inner in items:
        flat.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
    return flat
