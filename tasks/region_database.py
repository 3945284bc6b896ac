"""`regions.expand.database`: a cross-region read replica of the primary database.

A cross-region replica needs three things of its own region: a DB subnet group (the second
region's public subnets; the replica itself is not publicly accessible), a security group
(open to the app's group only) and its parameter group. The primary's parameter group
(phase 2's tuned connections, say) cannot be attached across regions, so it is copied: a
group of the same name and family with the same user-set parameters. A default group exists
in every region and is used as it is.

The replica streams from the primary until `phasegate failover ENV --to REGION` promotes it,
an operator's explicit decision; no phase ever promotes it. Rollback deletes the replica
(no final snapshot: the primary holds the data) and then its groups.
"""

from typing import Any

from phasegate.errors import AwsCallError
from phasegate.inventory import DATABASE_IAM_ACTIONS, Database, Discovery
from phasegate.steps import Settling, StepRefused
from tasks.region_common import (
    ALB_STEP,
    NETWORK_STEP,
    PRICING_IAM_ACTIONS,
    RegionStep,
    missing,
    pages,
    tag_dict,
    tag_list,
)

BATCH = 20  # ModifyDBParameterGroup takes at most 20 parameters per call


class RegionDatabase(RegionStep):
    """The primary's read replica in the second region, in its own groups."""

    id = "regions.expand.database"
    title = "Second region: RDS cross-region read replica with the primary's parameter group"
    after = (ALB_STEP,)
    iam_actions = (
        *PRICING_IAM_ACTIONS,
        *DATABASE_IAM_ACTIONS,
        "rds:DescribeDBParameters",
        "rds:DescribeDBParameterGroups",
        "rds:DescribeDBSubnetGroups",
        "rds:ListTagsForResource",
        "rds:CreateDBParameterGroup",
        "rds:ModifyDBParameterGroup",
        "rds:CreateDBSubnetGroup",
        "rds:CreateDBInstanceReadReplica",
        "rds:AddTagsToResource",
        "rds:DeleteDBInstance",
        "rds:DeleteDBSubnetGroup",
        "rds:DeleteDBParameterGroup",
        "ec2:DescribeVpcs",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:CreateTags",
        "ec2:DeleteSecurityGroup",
        "elasticloadbalancing:DescribeLoadBalancers",
    )

    def _primary(self) -> tuple[Database, dict[str, Any]]:
        found = Discovery(self.ctx.config, self.clients).databases()
        primaries = [d for d in found if d.status != "deleting"]
        if len(primaries) != 1:
            names = ", ".join(d.identifier for d in primaries) or "none"
            raise StepRefused(
                f"{self.where()}: the second region replicates exactly one primary database; "
                f"found {names}"
            )
        db = primaries[0]
        raw = self.clients.rds.describe_db_instances(DBInstanceIdentifier=db.identifier)
        return db, raw["DBInstances"][0]

    def _user_parameters(self, group: str, region: str | None = None) -> dict[str, str]:
        rds = self.client("rds", region) if region else self.clients.rds
        pages = rds.get_paginator("describe_db_parameters").paginate(
            DBParameterGroupName=group, Source="user"
        )
        return {
            p["ParameterName"]: p["ParameterValue"]
            for page in pages
            for p in page["Parameters"]
            if p.get("ParameterValue") is not None
        }

    def _parameter_group(self, name: str | None) -> dict[str, Any]:
        """The primary's group, to copy (or, for a default one, to use as it is)."""
        if not name or name.startswith("default."):
            return {"name": name, "copied": False}
        found = self.clients.rds.describe_db_parameter_groups(DBParameterGroupName=name)
        family = found["DBParameterGroups"][0]["DBParameterGroupFamily"]
        return {
            "name": name,
            "copied": True,
            "family": family,
            "parameters": self._user_parameters(name),
        }

    def replica_id(self, primary: str) -> str:
        return f"{primary}-{self.region}"[:63]

    def desired(self) -> dict[str, Any]:
        db, raw = self._primary()
        return {
            "region": self.region,
            "security_group": {"name": self.name("db"), "from_app": [raw["Endpoint"]["Port"]]},
            "parameter_group": self._parameter_group(db.parameter_group),
            "subnet_group": self.name("db"),
            "replica": {
                "id": self.replica_id(db.identifier),
                "source": db.arn,
                "class": db.instance_class,
                "status": "available",
            },
        }

    def blockers(self) -> list[str]:
        db, raw = self._primary()
        if raw.get("BackupRetentionPeriod", 0) == 0:
            return [
                f"{db.identifier} keeps no automated backups (BackupRetentionPeriod 0); RDS "
                "makes a read replica only of a database that does: set a retention period"
            ]
        return []

    # -- reading -------------------------------------------------------------------------

    def _replica(self, region: str) -> dict[str, Any] | None:
        """Our replica: tagged by this step, streaming from the primary (contract with
        failover: found by tags, ReadReplicaSourceDBInstanceIdentifier the primary's ARN)."""
        rds = self.client("rds", region)
        for db in pages(rds, "describe_db_instances", "DBInstances"):
            tags = tag_dict(db.get("TagList"))
            if self.tags().items() <= tags.items():
                return dict(db)
        return None

    def _ours(self, rds: Any, arn: str) -> bool:
        tags = tag_dict(rds.list_tags_for_resource(ResourceName=arn)["TagList"])
        return self.tags().items() <= tags.items()

    def _subnet_group(self, region: str) -> dict[str, Any] | None:
        rds = self.client("rds", region)
        try:
            found = rds.describe_db_subnet_groups(DBSubnetGroupName=self.name("db"))
        except AwsCallError as exc:
            if missing(exc, "DBSubnetGroupNotFoundFault"):
                return None
            raise
        group = found["DBSubnetGroups"][0]
        return dict(group) if self._ours(rds, group["DBSubnetGroupArn"]) else None

    def _copied_group(self, name: str, region: str) -> dict[str, Any] | None:
        rds = self.client("rds", region)
        try:
            found = rds.describe_db_parameter_groups(DBParameterGroupName=name)
        except AwsCallError as exc:
            if missing(exc, "DBParameterGroupNotFound"):
                return None
            raise
        groups = found["DBParameterGroups"]
        if not groups or not self._ours(rds, groups[0]["DBParameterGroupArn"]):
            return None
        return {
            "name": name,
            "copied": True,
            "family": groups[0]["DBParameterGroupFamily"],
            "parameters": self._user_parameters(name, region),
        }

    def current(self, region: str) -> dict[str, Any]:
        found: dict[str, Any] = {"region": region}
        security_group = self.data_group_state(region)
        if security_group is not None:
            found["security_group"] = security_group
        replica = self._replica(region)
        attached = ((replica or {}).get("DBParameterGroups") or [{}])[0]
        name = attached.get("DBParameterGroupName")
        if name and not name.startswith("default."):
            copied = self._copied_group(name, region)
            if copied is not None:
                found["parameter_group"] = copied
        elif name:
            found["parameter_group"] = {"name": name, "copied": False}
        subnets = self._subnet_group(region)
        if subnets is not None:
            found["subnet_group"] = subnets["DBSubnetGroupName"]
        if replica is not None:
            found["replica"] = {
                "id": replica["DBInstanceIdentifier"],
                "source": replica.get("ReadReplicaSourceDBInstanceIdentifier"),
                "class": replica["DBInstanceClass"],
                "status": replica["DBInstanceStatus"],
            }
            if replica["DBInstanceStatus"] in ("creating", "backing-up", "modifying"):
                raise Settling(f"read replica {replica['DBInstanceIdentifier']} is being made")
        return found

    def terraform_part(self) -> dict[str, Any]:
        return {"enable_secondary_database": True}

    # -- changing ------------------------------------------------------------------------

    def describe(self, desired: dict[str, Any]) -> tuple[str, list[str], float]:
        db, _ = self._primary()
        group = desired["parameter_group"]
        replica = desired["replica"]
        copy = (
            f"copy parameter group {group['name']} ({len(group['parameters'])} parameter(s))"
            if group["copied"]
            else f"use {group['name']}"
        )
        cost, note = self.secondary_cost("database")
        return (
            f"{desired['region']}: read replica {replica['id']} ({replica['class']}) of "
            f"{db.identifier}; {copy} ({note})",
            [
                f"rds:CreateDBParameterGroup + ModifyDBParameterGroup: {copy}"
                if group["copied"]
                else f"no parameter group to copy ({group['name']} exists in every region)",
                f"rds:CreateDBSubnetGroup {desired['subnet_group']} (the public subnets)",
                f"ec2:CreateSecurityGroup {desired['security_group']['name']} "
                f"({desired['security_group']['from_app'][0]} from the app)",
                f"rds:CreateDBInstanceReadReplica {replica['id']} from {replica['source']}",
                "wait until the replica is available",
            ],
            cost,
        )

    def make(self, desired: dict[str, Any]) -> dict[str, Any]:
        region = str(desired["region"])
        rds = self.client("rds")
        security_group = self.make_data_group("db", desired["security_group"]["from_app"][0])
        group = desired["parameter_group"]
        if group["copied"]:
            self._copy_parameter_group(group, region)
        if self._subnet_group(region) is None:
            rds.create_db_subnet_group(
                DBSubnetGroupName=desired["subnet_group"],
                DBSubnetGroupDescription=f"phasegate {self.ctx.config.name}: read replica",
                SubnetIds=self.ec2_ids("subnets", NETWORK_STEP),
                Tags=tag_list(self.tags()),
            )
            self.progress(subnet_group=desired["subnet_group"])
        replica = self._replica(region)
        if replica is None:
            self._create_replica(desired, security_group)
        self.ctx.wait(
            f"read replica {desired['replica']['id']} in {region} available",
            lambda: (self._replica(region) or {}).get("DBInstanceStatus"),
            lambda status: status == "available",
            kind="rds_modify",
        )
        return {"replica": desired["replica"]["id"], "security_group": security_group}

    def _copy_parameter_group(self, group: dict[str, Any], region: str) -> None:
        rds = self.client("rds")
        if self._copied_group(group["name"], region) is None:
            rds.create_db_parameter_group(
                DBParameterGroupName=group["name"],
                DBParameterGroupFamily=group["family"],
                Description=f"phasegate {self.ctx.config.name}: copy of the primary's",
                Tags=tag_list(self.tags()),
            )
            self.progress(parameter_group=group["name"])
        present = self._user_parameters(group["name"], region)
        wanted = [(k, v) for k, v in group["parameters"].items() if present.get(k) != v]
        for i in range(0, len(wanted), BATCH):
            rds.modify_db_parameter_group(
                DBParameterGroupName=group["name"],
                Parameters=[
                    {"ParameterName": k, "ParameterValue": v, "ApplyMethod": "pending-reboot"}
                    for k, v in wanted[i : i + BATCH]
                ],
            )

    def _create_replica(self, desired: dict[str, Any], security_group: str) -> None:
        _, raw = self._primary()
        replica = desired["replica"]
        extra: dict[str, Any] = {}
        if raw.get("StorageEncrypted"):
            extra["KmsKeyId"] = "alias/aws/rds"  # a KMS key is regional: the region's own
        group = desired["parameter_group"]["name"]
        if group:
            extra["DBParameterGroupName"] = group
        self.client("rds").create_db_instance_read_replica(
            DBInstanceIdentifier=replica["id"],
            SourceDBInstanceIdentifier=replica["source"],
            SourceRegion=self.ctx.config.aws.region,
            DBInstanceClass=replica["class"],
            DBSubnetGroupName=desired["subnet_group"],
            VpcSecurityGroupIds=[security_group],
            PubliclyAccessible=False,
            Tags=tag_list(self.tags()),
            **extra,
        )
        self.progress(replica=replica["id"])

    # -- undoing -------------------------------------------------------------------------

    def teardown(self, region: str) -> None:
        rds = self.client("rds", region)
        replica = self._replica(region)
        if replica is not None:
            identifier = replica["DBInstanceIdentifier"]
            if replica["DBInstanceStatus"] != "deleting":
                rds.delete_db_instance(
                    DBInstanceIdentifier=identifier,
                    SkipFinalSnapshot=True,
                    DeleteAutomatedBackups=True,
                )
            self.ctx.wait(
                f"read replica {identifier} in {region} deleted",
                lambda: self._replica(region),
                lambda found: found is None,
                kind="rds_modify",
            )
        if self._subnet_group(region) is not None:
            rds.delete_db_subnet_group(DBSubnetGroupName=self.name("db"))
        for group in pages(rds, "describe_db_parameter_groups", "DBParameterGroups"):
            if not group["DBParameterGroupName"].startswith("default.") and self._ours(
                rds, group["DBParameterGroupArn"]
            ):
                rds.delete_db_parameter_group(DBParameterGroupName=group["DBParameterGroupName"])
        security_group = self.own_security_group(region)
        if security_group is not None:
            self.delete_security_group(region, security_group["GroupId"])

    def leftovers(self, region: str) -> list[str]:
        rds = self.client("rds", region)
        left = []
        replica = self._replica(region)
        if replica is not None:
            left.append(replica["DBInstanceIdentifier"])
        if self._subnet_group(region) is not None:
            left.append(self.name("db"))
        left += [
            g["DBParameterGroupName"]
            for g in pages(rds, "describe_db_parameter_groups", "DBParameterGroups")
            if not g["DBParameterGroupName"].startswith("default.")
            and self._ours(rds, g["DBParameterGroupArn"])
        ]
        group = self.own_security_group(region)
        if group is not None:
            left.append(group["GroupId"])
        return left
