"""`database.resize`: snapshot each RDS instance, then move it to the Graviton class config names.

Phase 1 moves the environment's PostgreSQL from db.t3.micro to db.t4g.micro (Graviton, about
10% cheaper for the same vCPUs and memory). RDS changes an instance class by replacing the
host, so the database is unavailable for a few minutes (single-AZ) or fails over (Multi-AZ);
that is why the step takes a manual snapshot first and why it waits until RDS reports the
instance available, at the new class, with nothing pending, before it calls the step done.

Crash safety: every action is check-before-act. The snapshot has a deterministic name, so a
retry after a crash finds and reuses the one it already took instead of taking another; the
modify is skipped when the instance already is (or is becoming) the target class. The
procedure is tasks.resize's; this module holds what RDS adds to it.
"""

from typing import Any

from phasegate.errors import AwsCallError
from phasegate.inventory import DATABASE_IAM_ACTIONS, Database, Discovery
from tasks.resize import SUPERSEDED_TAG, ResizeObservation, SnapshotThenResize

# Statuses waiting cannot get out of: modifying such an instance fails or hangs, so refuse.
_STUCK_STATUSES = frozenset(
    {
        "stopped",
        "stopping",
        "deleting",
        "failed",
        "storage-full",
        "restore-error",
        "inaccessible-encryption-credentials",
    }
)


class DatabaseObservation(ResizeObservation):
    """The environment's RDS instances, and which of them can run on the target class."""

    databases: list[Database]
    offered: dict[str, bool]


class DatabaseResize(SnapshotThenResize[Database, DatabaseObservation]):
    """Resize the environment's RDS instances to `targets.rds_instance_class`, snapshot first."""

    id = "database.resize"
    phase = 1
    title = "RDS to Graviton (snapshot, resize, wait available)"
    iam_actions = (
        *DATABASE_IAM_ACTIONS,
        "rds:DescribeOrderableDBInstanceOptions",
        "rds:DescribeDBSnapshots",
        "rds:CreateDBSnapshot",
        "rds:AddTagsToResource",
        "rds:ModifyDBInstance",
    )
    service = "RDS"
    kind = "RDS instance"
    size_key = "instance_class"
    inventory_field = "databases"
    restart_needed = True
    snapshot_action = "rds:CreateDBSnapshot"
    modify_action = "rds:ModifyDBInstance"
    modify_wait = "rds_modify"
    snapshot_wait = "rds_snapshot"
    terraform_decision = "rds_instance_class"

    @property
    def target_size(self) -> str:
        return self.ctx.config.targets.rds_instance_class

    # -- reading -------------------------------------------------------------------------

    def _discover(self) -> list[Database]:
        """The environment's instances, by discovery tags (DescribeDBInstances and its TagList)."""
        return Discovery(self.ctx.config, self.clients).databases()

    @staticmethod
    def _ident(resource: Database) -> str:
        return resource.identifier

    def _describe(self, identifier: str) -> dict[str, Any] | None:
        try:
            found = self.clients.rds.describe_db_instances(DBInstanceIdentifier=identifier)
        except AwsCallError as exc:
            if exc.code == "DBInstanceNotFound":
                return None
            raise
        return found["DBInstances"][0]

    @staticmethod
    def _size(live: dict[str, Any]) -> str:
        return live["DBInstanceClass"]

    @staticmethod
    def _status(live: dict[str, Any]) -> str:
        return live["DBInstanceStatus"]

    @staticmethod
    def _pending_size(live: dict[str, Any]) -> str | None:
        return (live.get("PendingModifiedValues") or {}).get("DBInstanceClass")

    def _offers(self, engine: str, version: str, instance_class: str, multi_az: bool) -> bool:
        """Whether RDS sells `instance_class` for this engine version (and Multi-AZ, if used).

        RDS refuses ModifyDBInstance to a class the engine version does not offer (older
        minor versions do not list the Graviton classes), and moto accepts anything, so the
        step asks first rather than learning it from a failed modify.
        """
        pages = self.clients.rds.get_paginator("describe_orderable_db_instance_options").paginate(
            Engine=engine, EngineVersion=version, DBInstanceClass=instance_class
        )
        return any(
            option["DBInstanceClass"] == instance_class
            and (not multi_az or option.get("MultiAZCapable", False))
            for page in pages
            for option in page["OrderableDBInstanceOptions"]
        )

    def _snapshots(self, identifier: str) -> dict[str, dict[str, Any]]:
        pages = self.clients.rds.get_paginator("describe_db_snapshots").paginate(
            DBInstanceIdentifier=identifier, SnapshotType="manual"
        )
        return {s["DBSnapshotIdentifier"]: s for page in pages for s in page["DBSnapshots"]}

    @staticmethod
    def _snapshot_status(snapshot: dict[str, Any]) -> str | None:
        return snapshot.get("Status")

    def _superseded(self, snapshot: dict[str, Any]) -> bool:
        """Read from the TagList DescribeDBSnapshots already returned: no extra call."""
        return any(t["Key"] == SUPERSEDED_TAG for t in snapshot.get("TagList", []))

    def observe(self) -> DatabaseObservation:
        """The instances, plus an orderability answer for each one not yet at the target.

        Only the databases are read: every other component of the environment would appear
        unchanged on both sides of the plan's cost delta, so reading it would only cost calls.
        """
        target = self.target_size
        databases = self._discover()
        offered = {
            db.identifier: self._offers(db.engine, db.engine_version, target, db.multi_az)
            for db in databases
            if db.instance_class != target
        }
        return DatabaseObservation(databases=databases, target=target, offered=offered)

    # -- planning ------------------------------------------------------------------------

    def _observed(self, obs: DatabaseObservation) -> list[Database]:
        return obs.databases

    def _refusal(self, obs: DatabaseObservation, db: Database) -> str | None:
        target = obs.target
        if db.status in _STUCK_STATUSES or db.status.startswith("incompatible-"):
            return (
                f"RDS instance {db.identifier} is {db.status!r}; "
                "it cannot be resized until it is available"
            )
        if not obs.offered[db.identifier]:
            deployment = " Multi-AZ" if db.multi_az else ""
            return (
                f"RDS instance {db.identifier} ({db.engine} {db.engine_version}) cannot move to "
                f"{target}: RDS does not offer {target}{deployment} for {db.engine} "
                f"{db.engine_version} (DescribeOrderableDBInstanceOptions); upgrade the engine "
                "version or choose an offered class in targets.rds_instance_class"
            )
        return None

    def _summary(self, pending: list[Database], target: str) -> str:
        return f"resize {len(pending)} RDS instance(s) to {target}: " + ", ".join(
            f"{db.identifier} ({db.instance_class})" for db in pending
        )

    def _before(self, db: Database) -> dict[str, Any]:
        return {
            "instance_class": db.instance_class,
            "engine": db.engine,
            "engine_version": db.engine_version,
            "multi_az": db.multi_az,
        }

    @staticmethod
    def _disruption(pending: list[Database]) -> str:
        """What the operator should expect, which depends on Multi-AZ."""
        single = [db.identifier for db in pending if not db.multi_az]
        multi = [db.identifier for db in pending if db.multi_az]
        parts = []
        if single:
            parts.append(
                "a few minutes of unavailability while the instance class changes (single-AZ)"
                + (f": {', '.join(single)}" if multi else "")
            )
        if multi:
            parts.append(
                "Multi-AZ fails over to the resized standby (typically 1-2 minutes of dropped "
                "connections)" + (f": {', '.join(multi)}" if single else "")
            )
        return "; ".join(parts)

    # -- changing ------------------------------------------------------------------------

    def _unoffered(self, identifier: str, live: dict[str, Any], target: str) -> str | None:
        if self._offers(live["Engine"], live["EngineVersion"], target, live.get("MultiAZ", False)):
            return None
        return (
            f"RDS instance {identifier} ({live['Engine']} {live['EngineVersion']}) cannot "
            f"move to {target}: RDS does not offer it for that engine version"
        )

    def _settled(self, live: dict[str, Any], size: str) -> bool:
        """Available at `size`, and with no PendingModifiedValues left to apply."""
        return super()._settled(live, size) and not live.get("PendingModifiedValues")

    def _modify(self, identifier: str, live: dict[str, Any], instance_class: str) -> None:
        pending = (live.get("PendingModifiedValues") or {}).get("DBInstanceClass")
        if instance_class not in (live["DBInstanceClass"], pending):
            self.clients.rds.modify_db_instance(
                DBInstanceIdentifier=identifier,
                DBInstanceClass=instance_class,
                ApplyImmediately=True,
            )

    def _create_snapshot(self, identifier: str, name: str, tags: list[dict[str, str]]) -> None:
        try:
            self.clients.rds.create_db_snapshot(
                DBInstanceIdentifier=identifier, DBSnapshotIdentifier=name, Tags=tags
            )
        except AwsCallError as exc:
            if exc.code != "DBSnapshotAlreadyExists":  # a concurrent try won the race
                raise

    def _tag_snapshot(self, snapshot: dict[str, Any], tags: list[dict[str, str]]) -> None:
        self.clients.rds.add_tags_to_resource(ResourceName=snapshot["DBSnapshotArn"], Tags=tags)
