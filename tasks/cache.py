"""`cache.resize`: snapshot each Redis replication group, then move it to the Graviton node type.

Phase 1 moves the environment's Redis from cache.t3.micro to cache.t4g.micro (same memory,
cheaper). ElastiCache scales a replication group online by replacing its nodes and failing
over to the replica, so there is no restart to plan for, only a brief failover; the snapshot
taken first is the way back if the data does not survive the move.

Before changing anything the step asks ElastiCache which node types the group may move to
(ListAllowedNodeTypeModifications) and refuses a target that is not among them, because
ModifyReplicationGroup would fail part-way or, for a scale-down the data no longer fits,
not at all. Every action is check-before-act, so a retry after a crash reuses the snapshot
it took and skips the modify when the group already is the target type.
"""

from datetime import UTC, datetime
from typing import Any

from phasegate.errors import AwsCallError
from phasegate.inventory import CacheGroup, Discovery, Inventory
from phasegate.steps import (
    Change,
    Observation,
    Record,
    Reversibility,
    Step,
    StepRefused,
    VerificationFailed,
)

# Same contract as tasks.database: a rollback keeps the snapshot and marks it superseded,
# so a later resize takes a fresh one instead of reusing data from before the rollback.
SUPERSEDED_TAG = "phasegate:superseded-by-rollback"
CREATED_BY_TAG = "phasegate:created-by"

_STUCK_STATUSES = frozenset({"deleting", "deleted", "create-failed"})


def snapshot_name(group_id: str, node_type: str) -> str:
    """`demo-redis-pre-resize-cache-t4g-micro`: deterministic, so a retry finds the one it took."""
    return f"{group_id}-pre-resize-{node_type.replace('.', '-')}"


class CacheObservation(Observation):
    """The environment's Redis replication groups and, for those not yet at the target, the
    node types ElastiCache allows each to move to."""

    caches: list[CacheGroup]
    target: str
    allowed: dict[str, list[str]]


class CacheResize(Step):
    """Resize the environment's Redis replication groups to `targets.redis_node_type`."""

    id = "cache.resize"
    phase = 1
    title = "Redis to Graviton (snapshot, resize, wait available)"
    iam_actions = (
        "elasticache:DescribeReplicationGroups",
        "elasticache:ListTagsForResource",
        "elasticache:ListAllowedNodeTypeModifications",
        "elasticache:DescribeSnapshots",
        "elasticache:CreateSnapshot",
        "elasticache:AddTagsToResource",
        "elasticache:ModifyReplicationGroup",
    )

    @property
    def target_node_type(self) -> str:
        return self.ctx.config.targets.redis_node_type

    def target(self) -> dict[str, Any]:
        return {"node_type": self.target_node_type}

    # -- reading -------------------------------------------------------------------------

    def _caches(self) -> list[CacheGroup]:
        """The environment's replication groups, by discovery tags."""
        return Discovery(self.ctx.config, self.clients).caches()

    def _describe(self, group_id: str) -> dict[str, Any] | None:
        """One replication group as ElastiCache shows it now, or None when it is gone."""
        try:
            found = self.clients.elasticache.describe_replication_groups(
                ReplicationGroupId=group_id
            )
        except AwsCallError as exc:
            if exc.code == "ReplicationGroupNotFoundFault":
                return None
            raise
        return found["ReplicationGroups"][0]

    def _require(self, group_id: str) -> dict[str, Any]:
        group = self._describe(group_id)
        if group is None:
            raise VerificationFailed(f"ElastiCache replication group {group_id} does not exist")
        return group

    def _allowed(self, group_id: str) -> list[str]:
        """Node types the group may move to now, up or down."""
        found = self.clients.elasticache.list_allowed_node_type_modifications(
            ReplicationGroupId=group_id
        )
        return [*found.get("ScaleUpModifications", []), *found.get("ScaleDownModifications", [])]

    def _snapshots(self, group_id: str) -> dict[str, dict[str, Any]]:
        """The group's snapshots by name."""
        pages = self.clients.elasticache.get_paginator("describe_snapshots").paginate(
            ReplicationGroupId=group_id
        )
        return {s["SnapshotName"]: s for page in pages for s in page["Snapshots"]}

    def _superseded(self, snapshot: dict[str, Any]) -> bool:
        tags = self.clients.elasticache.list_tags_for_resource(ResourceName=snapshot["ARN"])
        return any(t["Key"] == SUPERSEDED_TAG for t in tags.get("TagList", []))

    def observe(self) -> CacheObservation:
        """The groups, and the allowed node types of each one not yet at the target.

        Only the caches are read: every other component would appear unchanged on both sides
        of the plan's cost delta, so reading it would only cost calls.
        """
        target = self.target_node_type
        caches = self._caches()
        allowed = {g.id: self._allowed(g.id) for g in caches if g.node_type != target}
        return CacheObservation(caches=caches, target=target, allowed=allowed)

    # -- planning ------------------------------------------------------------------------

    def _inventory(self, caches: list[CacheGroup]) -> Inventory:
        config = self.ctx.config
        return Inventory(
            environment=config.name,
            region=config.aws.region,
            vpcs=[],
            services=[],
            load_balancers=[],
            databases=[],
            caches=caches,
            autoscaling_groups=[],
        )

    @staticmethod
    def _refusal(target: str, group: CacheGroup, allowed: list[str]) -> str | None:
        if group.status in _STUCK_STATUSES:
            return f"ElastiCache {group.id} is {group.status!r}; it cannot be resized"
        if target not in allowed:
            version = f", Redis {group.engine_version}" if group.engine_version else ""
            return (
                f"ElastiCache {group.id} ({group.node_type}{version}) "
                f"cannot move to {target}: ElastiCache does not allow it "
                f"(ListAllowedNodeTypeModifications offers {', '.join(allowed) or 'nothing'}); "
                "choose an allowed type in targets.redis_node_type"
            )
        return None

    @staticmethod
    def _disruption(pending: list[CacheGroup]) -> str:
        if all(g.node_count > 1 for g in pending):
            return "node replacement; brief failover to the replica"
        return (
            "node replacement; brief failover to the replica where there is one, a short "
            "outage for a group without a replica: "
            + ", ".join(g.id for g in pending if g.node_count <= 1)
        )

    def plan(self, obs: CacheObservation) -> Change | None:
        """None when every group is at the target type; a refusal before any cost or change
        when one may not move there; else the resize, its monthly delta and its disruption."""
        target = obs.target
        pending = [g for g in obs.caches if g.node_type != target]
        if not pending:
            return None
        refusals = [r for g in pending if (r := self._refusal(target, g, obs.allowed[g.id]))]
        if refusals:
            raise StepRefused("; ".join(refusals) + "; nothing was changed")
        resized = [
            g.model_copy(update={"node_type": target}) if g.node_type != target else g
            for g in obs.caches
        ]
        delta = self.ctx.cost_delta(self._inventory(obs.caches), self._inventory(resized))
        return self.change(
            summary=f"resize {len(pending)} Redis replication group(s) to {target}: "
            + ", ".join(f"{g.id} ({g.node_count} x {g.node_type})" for g in pending),
            actions=[
                action
                for g in pending
                for action in (
                    f"elasticache:CreateSnapshot {snapshot_name(g.id, target)} of {g.id} "
                    "(reused if it exists)",
                    f"elasticache:ModifyReplicationGroup {g.id} {g.node_type} -> {target} "
                    "(ApplyImmediately)",
                    f"wait until {g.id} is available as {target}",
                )
            ],
            cost_delta=delta,
            reversibility=Reversibility(
                restart_needed=False,
                rollback_possible=True,
                expected_disruption=self._disruption(pending),
            ),
            before={
                g.id: {
                    "node_type": g.node_type,
                    "node_count": g.node_count,
                    "engine_version": g.engine_version,
                    "status": g.status,
                }
                for g in pending
            },
            desired={"node_type": target},
        )

    # -- changing ------------------------------------------------------------------------

    def _wait_available(self, group_id: str, node_type: str | None = None) -> dict[str, Any]:
        """Until the group is available (and of `node_type`, when given)."""
        what = f"ElastiCache {group_id} available" + (f" as {node_type}" if node_type else "")
        return self.ctx.wait(
            what,
            lambda: self._require(group_id),
            lambda g: (
                g["Status"] == "available"
                and (node_type is None or g.get("CacheNodeType") == node_type)
            ),
        )

    def _ensure_snapshot(self, group_id: str, target: str) -> str:
        """The pre-resize snapshot of `group_id`: reused when a previous try took it."""
        existing = self._snapshots(group_id)
        base = snapshot_name(group_id, target)
        name, n = base, 1
        while name in existing and self._superseded(existing[name]):
            n += 1
            name = f"{base}-{n}"
        if name not in existing:
            tags = [{"Key": k, "Value": v} for k, v in self.ctx.config.discovery.tags.items()]
            try:
                self.clients.elasticache.create_snapshot(
                    ReplicationGroupId=group_id,
                    SnapshotName=name,
                    Tags=[*tags, {"Key": CREATED_BY_TAG, "Value": self.id}],
                )
            except AwsCallError as exc:
                if exc.code != "SnapshotAlreadyExistsFault":  # a concurrent try won the race
                    raise
        snap = self.ctx.wait(
            f"ElastiCache snapshot {name} of {group_id} available",
            lambda: self._snapshots(group_id).get(name, {}),
            lambda s: s.get("SnapshotStatus") in ("available", "failed"),
        )
        if snap["SnapshotStatus"] != "available":
            raise VerificationFailed(f"ElastiCache snapshot {name} of {group_id} failed")
        return name

    def _resize(self, group_id: str, node_type: str) -> None:
        """Modify unless the group already is `node_type`; wait until available as it."""
        group = self._wait_available(group_id)
        if group.get("CacheNodeType") != node_type:
            self.clients.elasticache.modify_replication_group(
                ReplicationGroupId=group_id, CacheNodeType=node_type, ApplyImmediately=True
            )
        self._wait_available(group_id, node_type)

    def apply(self, change: Change) -> dict[str, Any]:
        """Per group: re-check the move is allowed, snapshot (reused on retry), modify, wait.

        Every group is checked before any is touched, so a refusal changes nothing.
        """
        target = change.desired["node_type"]
        for group_id in change.before:
            group = self._require(group_id)
            if group.get("CacheNodeType") != target and target not in self._allowed(group_id):
                raise StepRefused(
                    f"ElastiCache {group_id} ({group.get('CacheNodeType')}) may not move to "
                    f"{target} (ListAllowedNodeTypeModifications); nothing was changed"
                )
        after: dict[str, Any] = {}
        for group_id in change.before:
            self._wait_available(group_id)
            snapshot = self._ensure_snapshot(group_id, target)
            self._resize(group_id, target)
            after[group_id] = {"node_type": target, "snapshot": snapshot}
            if self.log:
                self.log.info("cache.resized", group=group_id, to=target, snapshot=snapshot)
        return after

    # -- proving -------------------------------------------------------------------------

    def verify(self, record: Record) -> None:
        """AWS shows each group available at the target type, and its snapshot available.

        A run that changed nothing proves only that every group is at the target type.
        """
        if record.outcome == "unchanged" or record.change is None:
            target = self.target_node_type
            off = [g for g in self._caches() if g.node_type != target]
            if off:
                raise VerificationFailed(
                    ", ".join(f"ElastiCache {g.id} is {g.node_type}" for g in off)
                    + f", not {target}"
                )
            return
        target = record.change.desired["node_type"]
        for group_id, after in record.after.items():
            group = self._describe(group_id)
            if group is None:
                raise VerificationFailed(f"ElastiCache {group_id} no longer exists")
            if group.get("CacheNodeType") != target or group["Status"] != "available":
                raise VerificationFailed(
                    f"ElastiCache {group_id} is {group.get('CacheNodeType')} ({group['Status']}), "
                    f"expected {target} (available)"
                )
            snap = self._snapshots(group_id).get(after["snapshot"])
            if snap is None or snap["SnapshotStatus"] != "available":
                raise VerificationFailed(
                    f"pre-resize snapshot {after['snapshot']} of ElastiCache {group_id} is "
                    f"{'missing' if snap is None else snap['SnapshotStatus']}"
                )

    def rollback(self, record: Record) -> None:
        """Move each group back to its old node type and wait until it is available.

        The pre-resize snapshot is kept: it is the only copy of the data from before the
        change, and deleting backups is an operator's decision, not a rollback's side effect.
        It is tagged superseded so a later resize snapshots afresh rather than reusing it.
        """
        for group_id, before in record.before.items():
            self._resize(group_id, before["node_type"])
            snapshot = record.after.get(group_id, {}).get("snapshot")
            snap = self._snapshots(group_id).get(snapshot) if snapshot else None
            if snap is not None and not self._superseded(snap):
                self.clients.elasticache.add_tags_to_resource(
                    ResourceName=snap["ARN"],
                    Tags=[{"Key": SUPERSEDED_TAG, "Value": datetime.now(UTC).isoformat()}],
                )

    def verify_rollback(self, record: Record) -> None:
        """AWS shows each group at its old node type again."""
        for group_id, before in record.before.items():
            group = self._describe(group_id)
            if group is None:
                raise VerificationFailed(f"ElastiCache {group_id} no longer exists")
            if group.get("CacheNodeType") != before["node_type"]:
                raise VerificationFailed(
                    f"ElastiCache {group_id} is {group.get('CacheNodeType')}, "
                    f"expected {before['node_type']} after rollback"
                )
