"""`regions.expand.cache`: a Redis replication group in the second region, like the primary's.

Same node type, engine version and number of nodes, in its own cache subnet group (the
second region's public subnets) behind a security group open to the app's only. It starts
empty and is not kept in sync: the app's Redis holds a cache and sessions that rebuild after
a failover, and a Global Datastore (the replicated kind) needs larger node types than the t4g
ones phase 1 moves to, at several times the price.
"""

from typing import Any

from phasegate.errors import AwsCallError
from phasegate.inventory import CACHE_IAM_ACTIONS, CacheGroup, Discovery
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

REDIS_PORT = 6379


class RegionCache(RegionStep):
    """The primary's Redis shape, empty, in the second region."""

    id = "regions.expand.cache"
    title = "Second region: Redis replication group of the primary's node type"
    after = (ALB_STEP,)
    iam_actions = (
        *PRICING_IAM_ACTIONS,
        *CACHE_IAM_ACTIONS,
        "elasticache:DescribeCacheSubnetGroups",
        "elasticache:CreateCacheSubnetGroup",
        "elasticache:CreateReplicationGroup",
        "elasticache:AddTagsToResource",
        "elasticache:DeleteReplicationGroup",
        "elasticache:DeleteCacheSubnetGroup",
        "ec2:DescribeVpcs",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:CreateTags",
        "ec2:DeleteSecurityGroup",
    )

    def _primary(self) -> CacheGroup:
        found = Discovery(self.ctx.config, self.clients).caches()
        if len(found) != 1:
            names = ", ".join(c.id for c in found) or "none"
            raise StepRefused(
                f"{self.where()}: the second region copies exactly one Redis replication "
                f"group; found {names}"
            )
        return found[0]

    def desired(self) -> dict[str, Any]:
        primary = self._primary()
        return {
            "region": self.region,
            "security_group": {"name": self.name("cache"), "from_app": [REDIS_PORT]},
            "subnet_group": self.name("cache"),
            "replication_group": {
                "id": primary.id,
                "node_type": primary.node_type,
                "engine_version": primary.engine_version,
                "nodes": primary.node_count,
                "status": "available",
            },
        }

    # -- reading -------------------------------------------------------------------------

    def _group(self, region: str) -> dict[str, Any] | None:
        elasticache = self.client("elasticache", region)
        for group in pages(elasticache, "describe_replication_groups", "ReplicationGroups"):
            tags = elasticache.list_tags_for_resource(ResourceName=group["ARN"])["TagList"]
            if self.tags().items() <= tag_dict(tags).items():
                return dict(group)
        return None

    def _subnet_group(self, region: str) -> dict[str, Any] | None:
        elasticache = self.client("elasticache", region)
        try:
            found = elasticache.describe_cache_subnet_groups(
                CacheSubnetGroupName=self.name("cache")
            )
        except AwsCallError as exc:
            if missing(exc, "CacheSubnetGroupNotFoundFault"):
                return None
            raise
        group = found["CacheSubnetGroups"][0]
        tags = elasticache.list_tags_for_resource(ResourceName=group["ARN"])["TagList"]
        return dict(group) if self.tags().items() <= tag_dict(tags).items() else None

    def current(self, region: str) -> dict[str, Any]:
        found: dict[str, Any] = {"region": region}
        security_group = self.data_group_state(region)
        if security_group is not None:
            found["security_group"] = security_group
        subnets = self._subnet_group(region)
        if subnets is not None:
            found["subnet_group"] = subnets["CacheSubnetGroupName"]
        group = self._group(region)
        if group is not None:
            found["replication_group"] = {
                "id": group["ReplicationGroupId"],
                "node_type": group.get("CacheNodeType"),
                "engine_version": group.get("EngineVersion"),
                "nodes": len(group.get("MemberClusters") or []),
                "status": group["Status"],
            }
            if group["Status"] in ("creating", "modifying"):
                raise Settling(
                    f"Redis {group['ReplicationGroupId']} in {region} is {group['Status']}"
                )
        return found

    def terraform_part(self) -> dict[str, Any]:
        return {"enable_secondary_cache": True}

    # -- changing ------------------------------------------------------------------------

    def describe(self, desired: dict[str, Any]) -> tuple[str, list[str], float]:
        group = desired["replication_group"]
        cost, note = self.secondary_cost("cache")
        return (
            f"{desired['region']}: Redis {group['id']} ({group['nodes']} x {group['node_type']}), "
            f"empty: a cache that refills after a failover ({note})",
            [
                f"ec2:CreateSecurityGroup {desired['security_group']['name']} ({REDIS_PORT} "
                "from the app)",
                f"elasticache:CreateCacheSubnetGroup {desired['subnet_group']} (public subnets)",
                f"elasticache:CreateReplicationGroup {group['id']}: {group['nodes']} x "
                f"{group['node_type']}, Redis {group['engine_version']}",
                "wait until it is available",
            ],
            cost,
        )

    def make(self, desired: dict[str, Any]) -> dict[str, Any]:
        region = str(desired["region"])
        elasticache = self.client("elasticache")
        security_group = self.make_data_group("cache", REDIS_PORT)
        if self._subnet_group(region) is None:
            elasticache.create_cache_subnet_group(
                CacheSubnetGroupName=desired["subnet_group"],
                CacheSubnetGroupDescription=f"phasegate {self.ctx.config.name}: Redis",
                SubnetIds=self.ec2_ids("subnets", NETWORK_STEP),
                Tags=tag_list(self.tags()),
            )
            self.progress(subnet_group=desired["subnet_group"])
        spec = desired["replication_group"]
        if self._group(region) is None:
            extra = {"EngineVersion": spec["engine_version"]} if spec["engine_version"] else {}
            elasticache.create_replication_group(
                ReplicationGroupId=spec["id"],
                ReplicationGroupDescription=f"phasegate {self.ctx.config.name}: second region",
                Engine="redis",
                CacheNodeType=spec["node_type"],
                NumCacheClusters=spec["nodes"],
                CacheSubnetGroupName=desired["subnet_group"],
                SecurityGroupIds=[security_group],
                Tags=tag_list(self.tags()),
                **extra,
            )
            self.progress(replication_group=spec["id"])
        self.ctx.wait(
            f"Redis {spec['id']} in {region} available",
            lambda: (self._group(region) or {}).get("Status"),
            lambda status: status == "available",
            kind="elasticache_modify",
        )
        return {"replication_group": spec["id"], "security_group": security_group}

    # -- undoing -------------------------------------------------------------------------

    def teardown(self, region: str) -> None:
        elasticache = self.client("elasticache", region)
        group = self._group(region)
        if group is not None:
            name = group["ReplicationGroupId"]
            if group["Status"] != "deleting":
                elasticache.delete_replication_group(ReplicationGroupId=name)
            self.ctx.wait(
                f"Redis {name} in {region} deleted",
                lambda: self._group(region),
                lambda found: found is None,
                kind="elasticache_modify",
            )
        if self._subnet_group(region) is not None:
            elasticache.delete_cache_subnet_group(CacheSubnetGroupName=self.name("cache"))
        security_group = self.own_security_group(region)
        if security_group is not None:
            self.delete_security_group(region, security_group["GroupId"])

    def leftovers(self, region: str) -> list[str]:
        left = []
        group = self._group(region)
        if group is not None:
            left.append(group["ReplicationGroupId"])
        if self._subnet_group(region) is not None:
            left.append(self.name("cache"))
        security_group = self.own_security_group(region)
        if security_group is not None:
            left.append(security_group["GroupId"])
        return left
