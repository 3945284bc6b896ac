"""`cache.resize`: snapshot each Redis replication group, then move it to the Graviton node type.

Phase 1 moves the environment's Redis from cache.t3.micro to cache.t4g.micro (same memory,
cheaper). ElastiCache scales a replication group online by replacing its nodes and failing
over to the replica, so there is no restart to plan for, only a brief failover; the snapshot
taken first is the way back if the data does not survive the move.

Before changing anything the step asks ElastiCache which node types the group may move to
(ListAllowedNodeTypeModifications) and refuses a target that is not among them, because
ModifyReplicationGroup would fail part-way or, for a scale-down the data no longer fits,
not at all. Every action is check-before-act, so a retry after a crash reuses the snapshot
it took and skips the modify when the group already is the target type. The procedure is
tasks.resize's, shared with `database.resize`; this module holds what ElastiCache adds to it.
"""

from typing import Any

from phasegate.errors import AwsCallError
from phasegate.inventory import CACHE_IAM_ACTIONS, CacheGroup, Discovery
from tasks.resize import SUPERSEDED_TAG, ResizeObservation, SnapshotThenResize

_STUCK_STATUSES = frozenset({"deleting", "deleted", "create-failed"})


class CacheObservation(ResizeObservation):
    """The environment's Redis replication groups and, for those not yet at the target, the
    node types ElastiCache allows each to move to."""

    caches: list[CacheGroup]
    allowed: dict[str, list[str]]


class CacheResize(SnapshotThenResize[CacheGroup, CacheObservation]):
    """Resize the environment's Redis replication groups to `targets.redis_node_type`."""

    id = "cache.resize"
    phase = 1
    title = "Redis to Graviton (snapshot, resize, wait available)"
    iam_actions = (
        *CACHE_IAM_ACTIONS,
        "elasticache:ListAllowedNodeTypeModifications",
        "elasticache:DescribeSnapshots",
        "elasticache:CreateSnapshot",
        "elasticache:AddTagsToResource",
        "elasticache:ModifyReplicationGroup",
    )
    service = "ElastiCache"
    kind = "ElastiCache replication group"
    size_key = "node_type"
    inventory_field = "caches"
    restart_needed = False
    snapshot_action = "elasticache:CreateSnapshot"
    modify_action = "elasticache:ModifyReplicationGroup"
    modify_wait = "elasticache_modify"
    snapshot_wait = "elasticache_snapshot"
    terraform_decision = "redis_node_type"

    @property
    def target_size(self) -> str:
        return self.ctx.config.targets.redis_node_type

    # -- reading -------------------------------------------------------------------------

    def _discover(self) -> list[CacheGroup]:
        """The environment's replication groups, by discovery tags."""
        return Discovery(self.ctx.config, self.clients).caches()

    @staticmethod
    def _ident(resource: CacheGroup) -> str:
        return resource.id

    def _describe(self, group_id: str) -> dict[str, Any] | None:
        try:
            found = self.clients.elasticache.describe_replication_groups(
                ReplicationGroupId=group_id
            )
        except AwsCallError as exc:
            if exc.code == "ReplicationGroupNotFoundFault":
                return None
            raise
        return found["ReplicationGroups"][0]

    @staticmethod
    def _size(live: dict[str, Any]) -> str | None:
        return live.get("CacheNodeType")

    @staticmethod
    def _status(live: dict[str, Any]) -> str:
        return live["Status"]

    @staticmethod
    def _pending_size(live: dict[str, Any]) -> str | None:
        """ElastiCache does not name the node type a modify moves to: unknown until it ends."""
        return None

    def _allowed(self, group_id: str) -> list[str]:
        """Node types the group may move to now, up or down."""
        found = self.clients.elasticache.list_allowed_node_type_modifications(
            ReplicationGroupId=group_id
        )
        return [*found.get("ScaleUpModifications", []), *found.get("ScaleDownModifications", [])]

    def _snapshots(self, group_id: str) -> dict[str, dict[str, Any]]:
        pages = self.clients.elasticache.get_paginator("describe_snapshots").paginate(
            ReplicationGroupId=group_id
        )
        return {s["SnapshotName"]: s for page in pages for s in page["Snapshots"]}

    @staticmethod
    def _snapshot_status(snapshot: dict[str, Any]) -> str | None:
        return snapshot.get("SnapshotStatus")

    def _superseded(self, snapshot: dict[str, Any]) -> bool:
        """DescribeSnapshots carries no tags, so this asks ListTagsForResource."""
        tags = self.clients.elasticache.list_tags_for_resource(ResourceName=snapshot["ARN"])
        return any(t["Key"] == SUPERSEDED_TAG for t in tags.get("TagList", []))

    def observe(self) -> CacheObservation:
        """The groups, and the allowed node types of each one not yet at the target.

        Only the caches are read: every other component would appear unchanged on both sides
        of the plan's cost delta, so reading it would only cost calls.
        """
        target = self.target_size
        caches = self._discover()
        allowed = {g.id: self._allowed(g.id) for g in caches if g.node_type != target}
        return CacheObservation(caches=caches, target=target, allowed=allowed)

    # -- planning ------------------------------------------------------------------------

    def _observed(self, obs: CacheObservation) -> list[CacheGroup]:
        return obs.caches

    def _refusal(self, obs: CacheObservation, group: CacheGroup) -> str | None:
        target, allowed = obs.target, obs.allowed[group.id]
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

    def _summary(self, pending: list[CacheGroup], target: str) -> str:
        return f"resize {len(pending)} Redis replication group(s) to {target}: " + ", ".join(
            f"{g.id} ({g.node_count} x {g.node_type})" for g in pending
        )

    def _before(self, group: CacheGroup) -> dict[str, Any]:
        return {
            "node_type": group.node_type,
            "node_count": group.node_count,
            "engine_version": group.engine_version,
        }

    @staticmethod
    def _disruption(pending: list[CacheGroup]) -> str:
        if all(g.node_count > 1 for g in pending):
            return "node replacement; brief failover to the replica"
        return (
            "node replacement; brief failover to the replica where there is one, a short "
            "outage for a group without a replica: "
            + ", ".join(g.id for g in pending if g.node_count <= 1)
        )

    # -- changing ------------------------------------------------------------------------

    def _unoffered(self, group_id: str, live: dict[str, Any], target: str) -> str | None:
        if target in self._allowed(group_id):
            return None
        return (
            f"ElastiCache {group_id} ({live.get('CacheNodeType')}) may not move to "
            f"{target} (ListAllowedNodeTypeModifications)"
        )

    def _modify(self, group_id: str, live: dict[str, Any], node_type: str) -> None:
        if live.get("CacheNodeType") != node_type:
            self.clients.elasticache.modify_replication_group(
                ReplicationGroupId=group_id, CacheNodeType=node_type, ApplyImmediately=True
            )

    def _create_snapshot(self, group_id: str, name: str, tags: list[dict[str, str]]) -> None:
        try:
            self.clients.elasticache.create_snapshot(
                ReplicationGroupId=group_id, SnapshotName=name, Tags=tags
            )
        except AwsCallError as exc:
            if exc.code != "SnapshotAlreadyExistsFault":  # a concurrent try won the race
                raise

    def _tag_snapshot(self, snapshot: dict[str, Any], tags: list[dict[str, str]]) -> None:
        self.clients.elasticache.add_tags_to_resource(ResourceName=snapshot["ARN"], Tags=tags)
