"""`phasegate failover ENV --to REGION`: promote the second region's read replica.

Never part of a phase: promotion cannot be undone (a promoted replica is a standalone
database and can never become a replica again; going back means a new replica of it, or of a
restored primary, and a new failover), so it is its own command, shown first and approved
explicitly (flows/failover.py asks; prod never auto-approves). Its ledger chain is
`regions.failover` in phase 3: an intent before the promotion, applied once the database is
available and standalone, so `phasegate history` shows who promoted what and when. The
database is handed over as well: it carries `phasegate:promoted-by: regions.failover` and no
longer regions.expand's ownership tag (`phasegate:created-by`), so a rollback of regions.expand
(which deletes what carries that tag, replicas without a final snapshot) can never delete what
is now the live database. The environment's tags and `PhasegateRole: secondary` stay, so cost
and gates still see it.

Route 53 is left as regions.expand made it: the failover records answer with the second
region's ALB while the primary's health check fails, and the plan says so, because promotion
alone moves no traffic, and the primary's writes stop reaching the promoted copy.
"""

from typing import Any, Literal

from pydantic import BaseModel

from phasegate.aws import AwsClients, recording_calls
from phasegate.config import EnvironmentConfig
from phasegate.errors import AwsCallError, ConfigError, PhasegateError
from phasegate.ledger import Ledger
from phasegate.secondary_region import secondary_tags
from phasegate.steps import CREATED_BY_TAG, Change, Record, Reversibility, StepContext, utcnow

FAILOVER_STEP = "regions.failover"
FAILOVER_PHASE = 3
PROMOTED_TAG = "phasegate:promoted-by"
"""On the promoted database, value `regions.failover`: what a teardown of the second region
must look for before it deletes "the replica", which is now a standalone, writable database."""
IAM_ACTIONS = (
    "rds:DescribeDBInstances",
    "rds:PromoteReadReplica",
    "rds:AddTagsToResource",
    "rds:RemoveTagsFromResource",
    "route53:GetHostedZone",
    "route53:ListHostedZonesByName",
    "route53:ListResourceRecordSets",
)
"""What an operator grants `phasegate failover` (a test holds its calls to it)."""


class FailoverRecord(BaseModel):
    """One Route 53 failover record of `regions.record_name`, as the plan shows it."""

    name: str
    role: str  # PRIMARY or SECONDARY
    target: str
    health_check: str | None


class FailoverPlan(BaseModel):
    """What `failover` will do, read from AWS before anything changes."""

    environment: str
    region: str
    primary: str  # the primary database's ARN
    replica: str  # the replica's identifier in `region`
    replica_arn: str
    replica_class: str
    state: Literal["replica", "promoting", "promoted"]
    """replica: still replicating; promoting: a failover started (its intent is in the
    ledger) and did not finish; promoted: a failover finished earlier, nothing to do."""
    records: list[FailoverRecord]
    change: Change

    def lines(self) -> list[str]:
        """The plan in words, one line per consequence, for the terminal and the form."""
        out = [
            f"promote {self.replica} ({self.replica_class}) in {self.region}, read replica of "
            f"{self.primary}, to a standalone writable database",
            "IRREVERSIBLE: a promoted replica can never become a replica again; the primary's "
            "writes stop reaching it from the moment promotion starts",
        ]
        for r in self.records:
            check = f"health check {r.health_check}" if r.health_check else "no health check"
            out.append(f"Route 53 {r.role} record {r.name} -> {r.target} ({check}): unchanged")
        out.append(
            "traffic moves to the second region only while the primary's health check fails; "
            "point the second region's app at the promoted database before it takes writes"
            if self.records
            else "no Route 53 failover records found: traffic is not moved"
        )
        return out


def _where(config: EnvironmentConfig, region: str) -> str:
    return f"{config.name}: failover --to {region}"


def _tags_match(db: dict[str, Any], wanted: dict[str, str]) -> bool:
    have = {t["Key"]: t["Value"] for t in db.get("TagList", [])}
    return all(have.get(k) == v for k, v in wanted.items())


def find_replica(
    config: EnvironmentConfig, clients: AwsClients, region: str, ledger: Ledger
) -> dict[str, Any]:
    """The replica to promote in `region`: tagged for the second region and a replica of a
    database in the primary's region (or one an earlier failover in this ledger promoted).
    ConfigError naming what is missing or ambiguous.

    Only `region` is read: a failover is for the day the primary's region does not answer.
    """
    where = _where(config, region)
    if config.regions.secondary is None:
        raise ConfigError(f"{where}: regions.secondary is not set; there is no second region")
    if region != config.regions.secondary:
        raise ConfigError(
            f"{where}: {region!r} is not regions.secondary ({config.regions.secondary!r}), "
            "the only region with a replica to promote"
        )
    source_prefix = f":rds:{config.aws.region}:"
    promoted = {
        str(r.after.get("replica_arn")) for r in ledger.chain(FAILOVER_PHASE, FAILOVER_STEP)
    }
    wanted = secondary_tags(config)
    rds = clients.client("rds", region)
    pages = rds.get_paginator("describe_db_instances").paginate()
    found = [
        db
        for page in pages
        for db in page["DBInstances"]
        if _tags_match(db, wanted)
        and (
            source_prefix in (db.get("ReadReplicaSourceDBInstanceIdentifier") or "")
            or db["DBInstanceArn"] in promoted
        )
    ]
    if not found:
        raise ConfigError(
            f"{where}: no read replica of a {config.aws.region} database in {region} tagged "
            f"{wanted}; run phase 3 (regions.expand) first"
        )
    if len(found) > 1:
        names = ", ".join(db["DBInstanceIdentifier"] for db in found)
        raise ConfigError(f"{where}: several replicas in {region} ({names}); expected one")
    return found[0]


def failover_records(config: EnvironmentConfig, clients: AwsClients) -> list[FailoverRecord]:
    """The failover records of `regions.record_name` in `regions.hosted_zone` (read only)."""
    zone_ref, name = config.regions.hosted_zone, config.regions.record_name
    if not zone_ref or not name:
        return []
    route53 = clients.client("route53")
    if zone_ref.startswith("Z") and "." not in zone_ref:
        zone_id = zone_ref
        zone_name = route53.get_hosted_zone(Id=zone_id)["HostedZone"]["Name"]
    else:
        wanted = zone_ref.rstrip(".") + "."
        zones = route53.list_hosted_zones_by_name(DNSName=wanted)["HostedZones"]
        found = [z for z in zones if z["Name"] == wanted]
        if not found:
            return []
        zone_id, zone_name = found[0]["Id"], wanted
    fqdn = name.rstrip(".") + "."
    if not fqdn.endswith(zone_name):
        fqdn = f"{name.rstrip('.')}.{zone_name}"
    sets = route53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=fqdn)
    return [
        FailoverRecord(
            name=r["Name"],
            role=r["Failover"],
            target=(r.get("AliasTarget") or {}).get("DNSName")
            or ", ".join(v["Value"] for v in r.get("ResourceRecords", [])),
            health_check=r.get("HealthCheckId"),
        )
        for r in sets["ResourceRecordSets"]
        if r["Name"] == fqdn and r.get("Failover")
    ]


def plan_failover(config: EnvironmentConfig, region: str) -> FailoverPlan:
    """What `failover --to region` will do; changes nothing. ConfigError for bad input."""
    clients, ledger = AwsClients(config.aws), Ledger(config)
    replica = find_replica(config, clients, region, ledger)
    mine = [
        r
        for r in ledger.chain(FAILOVER_PHASE, FAILOVER_STEP)
        if r.after.get("replica_arn") == replica["DBInstanceArn"]
    ]
    state: Literal["replica", "promoting", "promoted"] = "replica"
    if mine:
        state = "promoted" if mine[-1].outcome == "applied" else "promoting"
    before = {
        "region": region,
        "replica": replica["DBInstanceIdentifier"],
        "replica_arn": replica["DBInstanceArn"],
        "source": replica.get("ReadReplicaSourceDBInstanceIdentifier") or _promoted_from(mine),
    }
    change = Change(
        step=FAILOVER_STEP,
        summary=f"promote read replica {replica['DBInstanceIdentifier']} in {region} to a "
        "standalone database (irreversible)",
        actions=[f"rds:PromoteReadReplica {replica['DBInstanceIdentifier']} ({region})"],
        monthly_cost_delta=0.0,  # the same instance, billed as before; its stream stops
        reversibility=Reversibility(
            restart_needed=True,
            rollback_possible=False,
            expected_disruption="the replica reboots while it is promoted (minutes); the "
            "primary keeps serving and stops replicating to it",
        ),
        before=before,
        desired={**before, "standalone": True},
    )
    return FailoverPlan(
        environment=config.name,
        region=region,
        primary=before["source"],
        replica=replica["DBInstanceIdentifier"],
        replica_arn=replica["DBInstanceArn"],
        replica_class=replica["DBInstanceClass"],
        state=state,
        records=failover_records(config, clients),
        change=change,
    )


def promote(config: EnvironmentConfig, plan: FailoverPlan, approver: str, comment: str) -> Record:
    """Promote the plan's replica, wait until it is available and standalone, and record it.

    Safe to call again after a crash (state "promoting"): a replica whose promotion began
    is not promoted twice, only waited for and recorded.
    """
    ctx = StepContext.for_environment(config)
    rds = ctx.clients.client("rds", plan.region)
    ledger = Ledger(config)
    started = utcnow()
    template = Record(
        environment=config.name,
        phase=FAILOVER_PHASE,
        step=FAILOVER_STEP,
        key="failover",
        outcome="intent",
        change=plan.change,
        before=plan.change.before,
        after={"region": plan.region, "replica_arn": plan.replica_arn},
        started_at=started,
        finished_at=started,
        approver=approver,
        comment=comment,
    )
    with recording_calls() as calls:
        ledger.append(template)
        if plan.state == "replica" or _never_started(rds, plan.replica):
            rds.promote_read_replica(DBInstanceIdentifier=plan.replica)
        rds.add_tags_to_resource(
            ResourceName=plan.replica_arn, Tags=[{"Key": PROMOTED_TAG, "Value": FAILOVER_STEP}]
        )
        # Handed over: no rollback of regions.expand may delete what is now the live database.
        rds.remove_tags_from_resource(ResourceName=plan.replica_arn, TagKeys=[CREATED_BY_TAG])

        def probe() -> dict[str, Any]:
            try:
                return rds.describe_db_instances(DBInstanceIdentifier=plan.replica)["DBInstances"][
                    0
                ]
            except AwsCallError as exc:
                if exc.code == "DBInstanceNotFound":
                    raise PhasegateError(
                        f"{_where(config, plan.region)}: {plan.replica} disappeared while it "
                        "was being promoted"
                    ) from None
                raise

        found = ctx.wait(
            f"{plan.replica} in {plan.region} available and standalone",
            probe,
            lambda db: (
                db["DBInstanceStatus"] == "available"
                and not db.get("ReadReplicaSourceDBInstanceIdentifier")
            ),
            kind="rds_modify",
        )
    return ledger.append(
        template.model_copy(
            update={
                "outcome": "applied",
                "after": {
                    "region": plan.region,
                    "replica_arn": plan.replica_arn,
                    "standalone": True,
                    "status": found["DBInstanceStatus"],
                },
                "api_actions": sorted(set(calls)),
                "finished_at": utcnow(),
            }
        )
    )


def _promoted_from(records: list[Record]) -> str:
    """The source an earlier failover of this replica recorded (its link is gone now)."""
    return str(records[0].before.get("source", "")) if records else ""


def _never_started(rds: Any, identifier: str) -> bool:
    """A failover that journaled its intent but whose promotion never reached AWS (the
    replica is still an available replica); a promotion under way shows another status."""
    found = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    return found["DBInstanceStatus"] == "available" and bool(
        found.get("ReadReplicaSourceDBInstanceIdentifier")
    )
