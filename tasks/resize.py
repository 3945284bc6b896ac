"""What `database.resize` and `cache.resize` share: snapshot first, then resize, then wait.

Both steps move a managed data store (an RDS instance, a Redis replication group) to a
cheaper size the config names, and both must be able to undo that without losing data. So
both follow one procedure, written once here:

- plan refuses, before any cost or change, a resource that cannot get to the target (stuck,
  or a size the service does not offer it); apply checks that again, for every resource
  before it touches any, because an approved Change may be hours old;
- a manual snapshot is taken first, under a deterministic name, so a retry after a crash
  finds and reuses the one it already took instead of taking another;
- the modify is skipped when the service already has (or is applying) the target size, and
  the step waits until the service shows the resource available at it;
- verify proves the size and the snapshot from AWS; rollback restores the old size and keeps
  the snapshot, tagged superseded, and verify_rollback proves the old size.

A subclass supplies the service's own calls and names: how to describe a resource, list,
take and tag its snapshots, ask what it may move to, and modify it.
"""

from abc import abstractmethod
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from phasegate.inventory import Inventory
from phasegate.steps import (
    CREATED_BY_TAG,
    Change,
    Observation,
    Record,
    Reversibility,
    Settling,
    Step,
    StepRefused,
    VerificationFailed,
    diff_entry,
)

# Tag a rollback puts on the snapshot it keeps: that snapshot predates the rollback, so a later
# resize must take a fresh one rather than reuse it (see `_snapshot_slot`).
SUPERSEDED_TAG = "phasegate:superseded-by-rollback"


class ResizeObservation(Observation):
    """What a resize step read: subclasses add the resources and what the service offers them."""

    target: str


R = TypeVar("R", bound=BaseModel)  # the inventory model of one resource (Database, CacheGroup)
Obs = TypeVar("Obs", bound=ResizeObservation)


def snapshot_name(resource_id: str, size: str) -> str:
    """`demo-db-pre-resize-db-t4g-micro`: deterministic, so a retry finds the one it took."""
    return f"{resource_id}-pre-resize-{size.replace('.', '-')}"


class SnapshotThenResize(Step, Generic[R, Obs]):
    """Resize each of the environment's resources of one kind to the config's size, snapshot
    first. Subclasses set the names below and implement the service's calls."""

    service: ClassVar[str]  # "RDS": names the service in waits and messages
    kind: ClassVar[str]  # "RDS instance": names one resource in messages
    # The size's key in target(), the Change and the Record; also the inventory model's field.
    size_key: ClassVar[str]
    # The inventory's list of these resources, the only part a plan's cost delta needs.
    inventory_field: ClassVar[str]
    restart_needed: ClassVar[bool]
    snapshot_action: ClassVar[str]  # "rds:CreateDBSnapshot", as the plan shows it
    modify_action: ClassVar[str]  # "rds:ModifyDBInstance", as the plan shows it
    modify_wait: ClassVar[str]  # the kind of wait a modify is: "rds_modify"
    snapshot_wait: ClassVar[str]  # the kind of wait a snapshot is: "rds_snapshot"
    terraform_decision: ClassVar[str]  # the size's migration decision: "rds_instance_class"

    @property
    @abstractmethod
    def target_size(self) -> str:
        """The size the config asks for."""

    def target(self) -> dict[str, Any]:
        return {self.size_key: self.target_size}

    def terraform_decisions(self) -> dict[str, Any]:
        return {self.terraform_decision: self.target_size}

    # -- the service's reads and calls -------------------------------------------------------

    @abstractmethod
    def _discover(self) -> list[R]:
        """The environment's resources of this kind, by discovery tags."""

    @staticmethod
    @abstractmethod
    def _ident(resource: R) -> str:
        """The resource's id in the service's API."""

    @abstractmethod
    def _describe(self, resource_id: str) -> dict[str, Any] | None:
        """The resource as the service shows it now, or None when it no longer exists."""

    @staticmethod
    @abstractmethod
    def _size(live: dict[str, Any]) -> str | None:
        """The size in a `_describe` answer."""

    @staticmethod
    @abstractmethod
    def _status(live: dict[str, Any]) -> str:
        """The status in a `_describe` answer."""

    @abstractmethod
    def _unoffered(self, resource_id: str, live: dict[str, Any], target: str) -> str | None:
        """Why the service will not move `live` to `target` now, or None when it will."""

    @abstractmethod
    def _modify(self, resource_id: str, live: dict[str, Any], size: str) -> None:
        """Ask for `size`, unless `live` shows the service already has (or is applying) it."""

    @staticmethod
    @abstractmethod
    def _pending_size(live: dict[str, Any]) -> str | None:
        """The size the service is moving the resource to (a modify in flight), if any."""

    @abstractmethod
    def _snapshots(self, resource_id: str) -> dict[str, dict[str, Any]]:
        """The resource's manual snapshots by name."""

    @staticmethod
    @abstractmethod
    def _snapshot_status(snapshot: dict[str, Any]) -> str | None:
        """The status in a `_snapshots` entry (None in an empty one)."""

    @abstractmethod
    def _superseded(self, snapshot: dict[str, Any]) -> bool:
        """Whether the snapshot carries SUPERSEDED_TAG."""

    @abstractmethod
    def _create_snapshot(self, resource_id: str, name: str, tags: list[dict[str, str]]) -> None:
        """Take snapshot `name`; one that already exists (a concurrent try won) is no error."""

    @abstractmethod
    def _tag_snapshot(self, snapshot: dict[str, Any], tags: list[dict[str, str]]) -> None:
        """Add `tags` to the snapshot."""

    # -- planning: what the service and the step's wording add ------------------------------

    @abstractmethod
    def _observed(self, obs: Obs) -> list[R]:
        """The resources in the observation."""

    @abstractmethod
    def _refusal(self, obs: Obs, resource: R) -> str | None:
        """Why `resource` cannot get to `obs`'s target, or None."""

    @abstractmethod
    def _summary(self, pending: list[R], target: str) -> str:
        """The Change's one-line summary: how many resources move to `target`, from what."""

    @abstractmethod
    def _before(self, resource: R) -> dict[str, Any]:
        """What the Change records of a resource it will resize (its size among it)."""

    @staticmethod
    @abstractmethod
    def _disruption(pending: list[R]) -> str:
        """What the operator should expect while `pending` resize."""

    # -- reading -------------------------------------------------------------------------

    def _require(self, resource_id: str) -> dict[str, Any]:
        live = self._describe(resource_id)
        if live is None:
            raise VerificationFailed(f"{self.kind} {resource_id} does not exist")
        return live

    def _inventory(self, resources: list[R]) -> Inventory:
        """An inventory of `resources` alone: every other component would appear unchanged
        on both sides of the plan's cost delta, so reading it would only cost calls."""
        config = self.ctx.config
        empty = Inventory(
            environment=config.name,
            region=config.aws.region,
            vpcs=[],
            services=[],
            load_balancers=[],
            databases=[],
            caches=[],
            autoscaling_groups=[],
        )
        return empty.model_copy(update={self.inventory_field: resources})

    # -- planning ------------------------------------------------------------------------

    def plan(self, obs: Obs) -> Change | None:
        """None when every resource is at the target; a refusal before any cost or change
        when one cannot get there; else the resize, its monthly delta and its disruption."""
        target = obs.target
        resources = self._observed(obs)
        pending = [r for r in resources if getattr(r, self.size_key) != target]
        if not pending:
            return None
        refusals = [reason for r in pending if (reason := self._refusal(obs, r))]
        if refusals:
            raise StepRefused("; ".join(refusals) + "; nothing was changed")
        resized = [
            r.model_copy(update={self.size_key: target})
            if getattr(r, self.size_key) != target
            else r
            for r in resources
        ]
        delta = self.ctx.cost_delta(self._inventory(resources), self._inventory(resized))
        return self.change(
            summary=self._summary(pending, target),
            actions=[action for r in pending for action in self._actions(r, target)],
            cost_delta=delta,
            reversibility=Reversibility(
                restart_needed=self.restart_needed,
                rollback_possible=True,
                expected_disruption=self._disruption(pending),
            ),
            before={self._ident(r): self._before(r) for r in pending},
            desired={self.size_key: target},
        )

    def _actions(self, resource: R, target: str) -> tuple[str, str, str]:
        rid = self._ident(resource)
        return (
            f"{self.snapshot_action} {snapshot_name(rid, target)} of {rid} (reused if it exists)",
            f"{self.modify_action} {rid} {getattr(resource, self.size_key)} -> {target} "
            "(ApplyImmediately)",
            f"wait until {rid} is available as {target}",
        )

    # -- changing ------------------------------------------------------------------------

    def _settled(self, live: dict[str, Any], size: str) -> bool:
        """Whether the service shows the resource available at `size`."""
        return self._status(live) == "available" and self._size(live) == size

    def _wait_available(self, resource_id: str, size: str | None = None) -> dict[str, Any]:
        """Until the resource is available (and settled at `size`, when given)."""
        return self.ctx.wait(
            f"{self.service} {resource_id} available" + (f" as {size}" if size else ""),
            lambda: self._require(resource_id),
            lambda live: (
                self._status(live) == "available" if size is None else self._settled(live, size)
            ),
            kind=self.modify_wait,
        )

    def _snapshot_slot(self, base: str, existing: dict[str, dict[str, Any]]) -> str:
        """The snapshot name this resize uses: `base`, or `base-2`, `base-3`... past retired ones.

        A name is deterministic for a given AWS state, so a crashed run's retry lands on the same
        name and reuses the snapshot; only a snapshot a rollback marked superseded is skipped,
        because it no longer holds the data as it is just before this resize.
        """
        name, n = base, 1
        while name in existing and self._superseded(existing[name]):
            n += 1
            name = f"{base}-{n}"
        return name

    def _ensure_snapshot(self, resource_id: str, target: str) -> str:
        """The pre-resize snapshot of the resource: reused when a previous try took it."""
        existing = self._snapshots(resource_id)
        name = self._snapshot_slot(snapshot_name(resource_id, target), existing)
        if name not in existing:
            tags = [{"Key": k, "Value": v} for k, v in self.ctx.config.discovery.tags.items()]
            self._create_snapshot(
                resource_id, name, [*tags, {"Key": CREATED_BY_TAG, "Value": self.id}]
            )
        snap = self.ctx.wait(
            f"{self.service} snapshot {name} of {resource_id} available",
            lambda: self._snapshots(resource_id).get(name, {}),
            lambda s: self._snapshot_status(s) in ("available", "failed"),
            kind=self.snapshot_wait,
        )
        if self._snapshot_status(snap) != "available":
            raise VerificationFailed(f"{self.service} snapshot {name} of {resource_id} failed")
        return name

    def _resize(self, resource_id: str, size: str) -> None:
        """Modify unless the service already has (or is applying) `size`; wait until settled."""
        live = self._wait_available(resource_id)
        self._modify(resource_id, live, size)
        self._wait_available(resource_id, size)

    def apply(self, change: Change) -> dict[str, Any]:
        """Per resource: re-check the target is offered, snapshot (reused on retry), modify, wait.

        Every resource is checked before any is touched, so a refusal changes nothing.
        """
        target = change.desired[self.size_key]
        for resource_id in change.before:
            live = self._require(resource_id)
            if self._size(live) != target and (
                reason := self._unoffered(resource_id, live, target)
            ):
                raise StepRefused(f"{reason}; nothing was changed")
        after: dict[str, Any] = {}
        for resource_id in change.before:
            self._wait_available(resource_id)
            snapshot = self._ensure_snapshot(resource_id, target)
            self.progress(**{resource_id: {"snapshot": snapshot}})
            self._resize(resource_id, target)
            after[resource_id] = {self.size_key: target, "snapshot": snapshot}
            if self.log:
                self.log.info("resized", resource=resource_id, to=target, snapshot=snapshot)
        return after

    # -- proving -------------------------------------------------------------------------

    def verify(self, record: Record) -> None:
        """AWS shows each resource available at the recorded size, and its snapshot available.

        Settling while the service is converging toward that size (modifying to it) or busy
        at it (a nightly backup, a snapshot being taken); drifted, with the diff, when the
        size is another one. A run that changed nothing proves every resource is at the
        target.
        """
        if record.outcome == "unchanged" or record.change is None:
            target = self.target_size
            expected = {self._ident(r): target for r in self._discover()}
        else:
            target = record.change.desired[self.size_key]
            expected = {resource_id: target for resource_id in record.after}
        diff: dict[str, Any] = {}
        busy: list[str] = []
        for resource_id, size in expected.items():
            live = self._describe(resource_id)
            field = f"{resource_id}.{self.size_key}"
            if live is None:
                diff[resource_id] = diff_entry("exists", "missing")
                continue
            status, now, pending = self._status(live), self._size(live), self._pending_size(live)
            if now == size and status == "available":
                pass
            elif now == size or pending == size or (pending is None and status != "available"):
                # converging to it, busy at it, or busy with a change it has not named yet
                busy.append(f"{self.service} {resource_id} is {status} ({now})")
            else:
                diff[field] = diff_entry(size, now if pending is None else f"{now} -> {pending}")
            snapshot = record.after.get(resource_id, {}).get("snapshot")
            if snapshot:
                snap = self._snapshots(resource_id).get(snapshot)
                snap_status = None if snap is None else self._snapshot_status(snap)
                if snap_status in ("creating", "pending"):
                    busy.append(f"snapshot {snapshot} of {resource_id} is {snap_status}")
                elif snap_status != "available":
                    diff[f"{resource_id}.snapshot"] = diff_entry(
                        f"{snapshot} available", snap_status or "missing"
                    )
        if diff:
            raise VerificationFailed.of(f"{self.ctx.config.name}: {self.id}", diff)
        if busy:
            raise Settling(f"{self.ctx.config.name}: {self.id}: " + "; ".join(busy))

    def coalesce(self, records: list[Record]) -> list[Record]:
        """One rollback to the oldest before-state of each resource: a size changed twice (or
        changed by hand in between) goes straight back to what it was before phasegate first
        touched it, without stopping at the sizes in between. Every snapshot taken on the way
        is kept and marked superseded."""
        if len(records) < 2:
            return records
        before: dict[str, Any] = {}
        snapshots: dict[str, list[str]] = {}
        for record in reversed(records):  # oldest first: the first before of a resource wins
            for resource_id, state in record.before.items():
                before.setdefault(resource_id, state)
            for resource_id, after in record.after.items():
                if after.get("snapshot"):
                    snapshots.setdefault(resource_id, []).append(after["snapshot"])
        merged = records[0].model_copy(
            update={
                "before": before,
                "after": {rid: {"snapshots": names} for rid, names in snapshots.items()},
            }
        )
        return [merged]

    def rollback(self, record: Record) -> None:
        """Move each resource back to its old size and wait until it is available.

        The pre-resize snapshot is kept, not deleted: it is the only copy of the data as it
        was before the change, and rolling back the size does not make it worthless (an
        operator may still need a point-in-time restore from before the migration). Deleting
        backups is an operator's decision, never a side effect of a rollback. It is tagged
        superseded, so a later resize takes a fresh snapshot instead of reusing this old one.
        """
        for resource_id, before in record.before.items():
            if self._describe(resource_id) is None:
                raise StepRefused(
                    f"{self.kind} {resource_id} no longer exists; nothing to restore it to "
                    f"{before[self.size_key]} (its pre-resize snapshots are kept)"
                )
            self._resize(resource_id, before[self.size_key])
            after = record.after.get(resource_id, {})
            names = after.get("snapshots") or [after.get("snapshot")]
            existing = self._snapshots(resource_id)
            for name in filter(None, names):
                snap = existing.get(name)
                if snap is not None and not self._superseded(snap):
                    self._tag_snapshot(
                        snap, [{"Key": SUPERSEDED_TAG, "Value": datetime.now(UTC).isoformat()}]
                    )

    def verify_rollback(self, record: Record) -> None:
        """AWS shows each resource at its old size again."""
        for resource_id, before in record.before.items():
            live = self._describe(resource_id)
            if live is None:
                raise VerificationFailed(f"{self.kind} {resource_id} no longer exists")
            if self._size(live) != before[self.size_key]:
                raise VerificationFailed(
                    f"{self.service} {resource_id} is {self._size(live)}, "
                    f"expected {before[self.size_key]} after rollback"
                )
