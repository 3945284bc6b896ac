"""`database.resize`: snapshot each RDS instance, then move it to the Graviton class config names.

Phase 1 moves the environment's PostgreSQL from db.t3.micro to db.t4g.micro (Graviton, about
10% cheaper for the same vCPUs and memory). RDS changes an instance class by replacing the
host, so the database is unavailable for a few minutes (single-AZ) or fails over (Multi-AZ);
that is why the step takes a manual snapshot first and why it waits until RDS reports the
instance available, at the new class, with nothing pending, before it calls the step done.

Crash safety: every action is check-before-act. The snapshot has a deterministic name, so a
retry after a crash finds and reuses the one it already took instead of taking another; the
modify is skipped when the instance already is (or is becoming) the target class.
"""

from datetime import UTC, datetime
from typing import Any

from phasegate.errors import AwsCallError
from phasegate.inventory import Database, Discovery, Inventory
from phasegate.steps import (
    Change,
    Observation,
    Record,
    Reversibility,
    Step,
    StepRefused,
    VerificationFailed,
)

# Tag a rollback puts on the snapshot it keeps: that snapshot predates the rollback, so a later
# resize must take a fresh one rather than reuse it (see `snapshot_slot`).
SUPERSEDED_TAG = "phasegate:superseded-by-rollback"
CREATED_BY_TAG = "phasegate:created-by"

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


def snapshot_name(identifier: str, instance_class: str) -> str:
    """`demo-db-pre-resize-db-t4g-micro`: deterministic, so a retry finds the one it took."""
    return f"{identifier}-pre-resize-{instance_class.replace('.', '-')}"


def snapshot_slot(base: str, superseded: set[str]) -> str:
    """The snapshot name this resize uses: `base`, or `base-2`, `base-3`... past retired ones.

    A name is deterministic for a given AWS state, so a crashed run's retry lands on the same
    name and reuses the snapshot; only a snapshot a rollback marked superseded is skipped,
    because it no longer holds the data as it is just before this resize.
    """
    name, n = base, 1
    while name in superseded:
        n += 1
        name = f"{base}-{n}"
    return name


class DatabaseObservation(Observation):
    """The environment's RDS instances, and which of them can run on the target class."""

    databases: list[Database]
    target: str
    offered: dict[str, bool]


class DatabaseResize(Step):
    """Resize the environment's RDS instances to `targets.rds_instance_class`, snapshot first."""

    id = "database.resize"
    phase = 1
    title = "RDS to Graviton (snapshot, resize, wait available)"
    iam_actions = (
        "rds:DescribeDBInstances",
        "rds:DescribeOrderableDBInstanceOptions",
        "rds:DescribeDBSnapshots",
        "rds:CreateDBSnapshot",
        "rds:AddTagsToResource",
        "rds:ModifyDBInstance",
    )

    @property
    def target_class(self) -> str:
        return self.ctx.config.targets.rds_instance_class

    def target(self) -> dict[str, Any]:
        return {"instance_class": self.target_class}

    # -- reading -------------------------------------------------------------------------

    def _databases(self) -> list[Database]:
        """The environment's instances, by discovery tags (DescribeDBInstances and its TagList)."""
        return Discovery(self.ctx.config, self.clients).databases()

    def _describe(self, identifier: str) -> dict[str, Any] | None:
        """One instance as RDS shows it now, or None when it no longer exists."""
        try:
            found = self.clients.rds.describe_db_instances(DBInstanceIdentifier=identifier)
        except AwsCallError as exc:
            if exc.code == "DBInstanceNotFound":
                return None
            raise
        return found["DBInstances"][0]

    def _require(self, identifier: str) -> dict[str, Any]:
        db = self._describe(identifier)
        if db is None:
            raise VerificationFailed(f"RDS instance {identifier} does not exist")
        return db

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
        """The instance's manual snapshots by identifier."""
        pages = self.clients.rds.get_paginator("describe_db_snapshots").paginate(
            DBInstanceIdentifier=identifier, SnapshotType="manual"
        )
        return {s["DBSnapshotIdentifier"]: s for page in pages for s in page["DBSnapshots"]}

    def observe(self) -> DatabaseObservation:
        """The instances, plus an orderability answer for each one not yet at the target.

        Only the databases are read: every other component of the environment would appear
        unchanged on both sides of the plan's cost delta, so reading it would only cost calls.
        """
        target = self.target_class
        databases = self._databases()
        offered = {
            db.identifier: self._offers(db.engine, db.engine_version, target, db.multi_az)
            for db in databases
            if db.instance_class != target
        }
        return DatabaseObservation(databases=databases, target=target, offered=offered)

    # -- planning ------------------------------------------------------------------------

    def _inventory(self, databases: list[Database]) -> Inventory:
        config = self.ctx.config
        return Inventory(
            environment=config.name,
            region=config.aws.region,
            vpcs=[],
            services=[],
            load_balancers=[],
            databases=databases,
            caches=[],
            autoscaling_groups=[],
        )

    @staticmethod
    def _refusal(target: str, db: Database, offered: bool) -> str | None:
        if db.status in _STUCK_STATUSES or db.status.startswith("incompatible-"):
            return (
                f"RDS instance {db.identifier} is {db.status!r}; "
                "it cannot be resized until it is available"
            )
        if not offered:
            deployment = " Multi-AZ" if db.multi_az else ""
            return (
                f"RDS instance {db.identifier} ({db.engine} {db.engine_version}) cannot move to "
                f"{target}: RDS does not offer {target}{deployment} for {db.engine} "
                f"{db.engine_version} (DescribeOrderableDBInstanceOptions); upgrade the engine "
                "version or choose an offered class in targets.rds_instance_class"
            )
        return None

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

    def plan(self, obs: DatabaseObservation) -> Change | None:
        """None when every instance is at the target class; a refusal before any cost or change
        when one cannot get there; else the resize, its monthly delta and its disruption."""
        target = obs.target
        pending = [db for db in obs.databases if db.instance_class != target]
        if not pending:
            return None
        refusals = [
            r for db in pending if (r := self._refusal(target, db, obs.offered[db.identifier]))
        ]
        if refusals:
            raise StepRefused("; ".join(refusals) + "; nothing was changed")
        resized = [
            db.model_copy(update={"instance_class": target}) if db.instance_class != target else db
            for db in obs.databases
        ]
        delta = self.ctx.cost_delta(self._inventory(obs.databases), self._inventory(resized))
        base = {db.identifier: snapshot_name(db.identifier, target) for db in pending}
        return self.change(
            summary=f"resize {len(pending)} RDS instance(s) to {target}: "
            + ", ".join(f"{db.identifier} ({db.instance_class})" for db in pending),
            actions=[
                action
                for db in pending
                for action in (
                    f"rds:CreateDBSnapshot {base[db.identifier]} of {db.identifier} "
                    "(reused if it exists)",
                    f"rds:ModifyDBInstance {db.identifier} {db.instance_class} -> {target} "
                    "(ApplyImmediately)",
                    f"wait until {db.identifier} is available as {target}",
                )
            ],
            cost_delta=delta,
            reversibility=Reversibility(
                restart_needed=True,
                rollback_possible=True,
                expected_disruption=self._disruption(pending),
            ),
            before={
                db.identifier: {
                    "instance_class": db.instance_class,
                    "engine": db.engine,
                    "engine_version": db.engine_version,
                    "status": db.status,
                    "multi_az": db.multi_az,
                }
                for db in pending
            },
            desired={"instance_class": target},
        )

    # -- changing ------------------------------------------------------------------------

    def _wait_settled(self, identifier: str, instance_class: str) -> dict[str, Any]:
        """Until RDS shows the instance available, at `instance_class`, with nothing pending."""
        return self.ctx.wait(
            f"RDS {identifier} available as {instance_class}",
            lambda: self._require(identifier),
            lambda db: (
                db["DBInstanceStatus"] == "available"
                and db["DBInstanceClass"] == instance_class
                and not db.get("PendingModifiedValues")
            ),
        )

    def _wait_available(self, identifier: str) -> dict[str, Any]:
        return self.ctx.wait(
            f"RDS {identifier} available",
            lambda: self._require(identifier),
            lambda db: db["DBInstanceStatus"] == "available",
        )

    def _ensure_snapshot(self, identifier: str, target: str) -> str:
        """The pre-resize snapshot of `identifier`: reused when a previous try took it."""
        rds = self.clients.rds
        existing = self._snapshots(identifier)
        superseded = {
            name
            for name, snap in existing.items()
            if any(t["Key"] == SUPERSEDED_TAG for t in snap.get("TagList", []))
        }
        name = snapshot_slot(snapshot_name(identifier, target), superseded)
        if name not in existing:
            tags = [{"Key": k, "Value": v} for k, v in self.ctx.config.discovery.tags.items()]
            try:
                rds.create_db_snapshot(
                    DBInstanceIdentifier=identifier,
                    DBSnapshotIdentifier=name,
                    Tags=[*tags, {"Key": CREATED_BY_TAG, "Value": self.id}],
                )
            except AwsCallError as exc:
                if exc.code != "DBSnapshotAlreadyExists":  # a concurrent try won the race
                    raise
        snap = self.ctx.wait(
            f"RDS snapshot {name} of {identifier} available",
            lambda: self._snapshots(identifier).get(name, {}),
            lambda s: s.get("Status") in ("available", "failed"),
        )
        if snap["Status"] != "available":
            raise VerificationFailed(f"RDS snapshot {name} of {identifier} failed")
        return name

    def _resize(self, identifier: str, instance_class: str) -> None:
        """Modify unless RDS already has (or is applying) `instance_class`; wait until settled."""
        db = self._wait_available(identifier)
        pending = (db.get("PendingModifiedValues") or {}).get("DBInstanceClass")
        if db["DBInstanceClass"] != instance_class and pending != instance_class:
            self.clients.rds.modify_db_instance(
                DBInstanceIdentifier=identifier,
                DBInstanceClass=instance_class,
                ApplyImmediately=True,
            )
        self._wait_settled(identifier, instance_class)

    def apply(self, change: Change) -> dict[str, Any]:
        """Per instance: re-check orderability, snapshot (reused on retry), modify, wait.

        Every instance is checked before any is touched, so a refusal changes nothing.
        """
        target = change.desired["instance_class"]
        for identifier in change.before:
            db = self._require(identifier)
            if db["DBInstanceClass"] != target and not self._offers(
                db["Engine"], db["EngineVersion"], target, db.get("MultiAZ", False)
            ):
                raise StepRefused(
                    f"RDS instance {identifier} ({db['Engine']} {db['EngineVersion']}) cannot "
                    f"move to {target}: RDS does not offer it for that engine version; "
                    "nothing was changed"
                )
        after: dict[str, Any] = {}
        for identifier in change.before:
            self._wait_available(identifier)
            snapshot = self._ensure_snapshot(identifier, target)
            self._resize(identifier, target)
            after[identifier] = {"instance_class": target, "snapshot": snapshot}
            if self.log:
                self.log.info("database.resized", db=identifier, to=target, snapshot=snapshot)
        return after

    # -- proving -------------------------------------------------------------------------

    def verify(self, record: Record) -> None:
        """AWS shows each instance available at the target class, and its snapshot available.

        A run that changed nothing proves only that every instance is at the target class.
        """
        if record.outcome == "unchanged" or record.change is None:
            target = self.target_class
            off = [db for db in self._databases() if db.instance_class != target]
            if off:
                raise VerificationFailed(
                    ", ".join(f"RDS {db.identifier} is {db.instance_class}" for db in off)
                    + f", not {target}"
                )
            return
        target = record.change.desired["instance_class"]
        for identifier, after in record.after.items():
            db = self._describe(identifier)
            if db is None:
                raise VerificationFailed(f"RDS instance {identifier} no longer exists")
            if db["DBInstanceClass"] != target or db["DBInstanceStatus"] != "available":
                raise VerificationFailed(
                    f"RDS {identifier} is {db['DBInstanceClass']} ({db['DBInstanceStatus']}), "
                    f"expected {target} (available)"
                )
            snap = self._snapshots(identifier).get(after["snapshot"])
            if snap is None or snap["Status"] != "available":
                raise VerificationFailed(
                    f"pre-resize snapshot {after['snapshot']} of RDS {identifier} is "
                    f"{'missing' if snap is None else snap['Status']}"
                )

    def rollback(self, record: Record) -> None:
        """Move each instance back to its old class and wait until it is available.

        The pre-resize snapshot is kept, not deleted: it is the only copy of the data as it
        was before the change, and rolling back the class does not make it worthless (an
        operator may still need a point-in-time restore from before the migration). Deleting
        backups is an operator's decision, never a side effect of a rollback. It is tagged
        superseded, so a later resize takes a fresh snapshot instead of reusing this old one.
        """
        for identifier, before in record.before.items():
            self._resize(identifier, before["instance_class"])
            snapshot = record.after.get(identifier, {}).get("snapshot")
            snap = self._snapshots(identifier).get(snapshot) if snapshot else None
            if snap is not None and not any(
                t["Key"] == SUPERSEDED_TAG for t in snap.get("TagList", [])
            ):
                self.clients.rds.add_tags_to_resource(
                    ResourceName=snap["DBSnapshotArn"],
                    Tags=[{"Key": SUPERSEDED_TAG, "Value": datetime.now(UTC).isoformat()}],
                )

    def verify_rollback(self, record: Record) -> None:
        """AWS shows each instance at its old class again."""
        for identifier, before in record.before.items():
            db = self._describe(identifier)
            if db is None:
                raise VerificationFailed(f"RDS instance {identifier} no longer exists")
            if db["DBInstanceClass"] != before["instance_class"]:
                raise VerificationFailed(
                    f"RDS {identifier} is {db['DBInstanceClass']}, "
                    f"expected {before['instance_class']} after rollback"
                )
