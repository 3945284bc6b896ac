"""Keeping RDS and Redis reachable when the app's network moves.

The common Terraform pattern admits the private subnets' CIDRs to the data stores' security
groups (`cidr_blocks = module.vpc.private_subnets_cidr_blocks`). Tasks moved to the public
subnets, or instances of a new Auto Scaling group, come from other addresses and would be
refused: connections time out, and moto, which does not enforce security groups, would never
show it. So before the app moves, every such rule gets a twin admitting the app's own security
group on the same protocol and ports. Each twin is returned as a plain dict, journaled by the
step and revoked exactly by its rollback; nothing else in those groups is touched.
"""

import ipaddress
from typing import Any

from phasegate.aws import AwsClients
from phasegate.errors import AwsCallError
from phasegate.inventory import Inventory

TWIN_DESCRIPTION = "phasegate: the app, as from "

DATA_ACCESS_IAM_ACTIONS = (
    "rds:DescribeDBInstances",
    "elasticache:DescribeCacheClusters",
    "ec2:DescribeSecurityGroups",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupIngress",
)


def data_store_groups(clients: AwsClients, inventory: Inventory) -> dict[str, str]:
    """Security group id -> the data store it guards (RDS instances, Redis clusters)."""
    groups: dict[str, str] = {}
    for db in inventory.databases:
        for found in clients.rds.describe_db_instances(DBInstanceIdentifier=db.identifier)[
            "DBInstances"
        ]:
            for sg in found.get("VpcSecurityGroups", []):
                groups.setdefault(sg["VpcSecurityGroupId"], f"RDS {db.identifier}")
    for cache in inventory.caches:
        for member in cache.member_clusters:
            try:
                found = clients.elasticache.describe_cache_clusters(CacheClusterId=member)
            except AwsCallError as exc:
                if exc.code != "CacheClusterNotFound":
                    raise
                continue  # a member being replaced right now: the others carry its groups
            for cluster in found["CacheClusters"]:
                for sg in cluster.get("SecurityGroups", []):
                    groups.setdefault(sg["SecurityGroupId"], f"ElastiCache {cache.id}")
    return groups


def _covers(rule_cidr: str, cidrs: list[str]) -> bool:
    net = ipaddress.ip_network(rule_cidr, strict=False)
    return all(ipaddress.ip_network(c).subnet_of(net) for c in cidrs)  # type: ignore[arg-type]


def _overlaps(rule_cidr: str, cidrs: list[str]) -> bool:
    net = ipaddress.ip_network(rule_cidr, strict=False)
    return any(ipaddress.ip_network(c).overlaps(net) for c in cidrs)


def needed_rules(
    clients: AwsClients,
    groups: dict[str, str],
    private_cidrs: list[str],
    new_cidrs: list[str],
    source_group: str,
) -> list[dict[str, Any]]:
    """The rules to add so `source_group` reaches each data store the private CIDRs reach.

    A rule admitting a private CIDR that already covers `new_cidrs` (the VPC's whole range,
    say) needs no twin; nor does one whose twin someone else already made. A twin phasegate
    made (its description says so) is listed again, so a retried apply still journals it.
    """
    if not groups:
        return []
    needed = []
    described = clients.ec2.describe_security_groups(GroupIds=sorted(groups))["SecurityGroups"]
    for group in described:
        perms = group.get("IpPermissions", [])
        have = {
            (p.get("IpProtocol"), p.get("FromPort"), p.get("ToPort"))
            for p in perms
            if any(
                pair.get("GroupId") == source_group
                and not pair.get("Description", "").startswith(TWIN_DESCRIPTION)
                for pair in p.get("UserIdGroupPairs", [])
            )
        }
        for perm in perms:
            cidrs = [r["CidrIp"] for r in perm.get("IpRanges", [])]
            admits_private = [c for c in cidrs if _overlaps(c, private_cidrs)]
            if not admits_private or any(_covers(c, new_cidrs) for c in cidrs):
                continue
            key = (perm.get("IpProtocol"), perm.get("FromPort"), perm.get("ToPort"))
            if key in have:
                continue
            have.add(key)
            needed.append(
                {
                    "group_id": group["GroupId"],
                    "guards": groups[group["GroupId"]],
                    "protocol": key[0],
                    "from_port": key[1],
                    "to_port": key[2],
                    "source_group": source_group,
                    "because": ", ".join(admits_private),
                    "description": f"{TWIN_DESCRIPTION}{', '.join(admits_private)}"[:255],
                }
            )
    return needed


def _permission(rule: dict[str, Any]) -> dict[str, Any]:
    """The rule as IpPermissions; the same description on add and revoke, so the revoke names
    exactly the rule that was added."""
    perm: dict[str, Any] = {
        "IpProtocol": rule["protocol"],
        "UserIdGroupPairs": [{"GroupId": rule["source_group"]}],
    }
    if rule.get("description"):
        perm["UserIdGroupPairs"][0]["Description"] = rule["description"]
    if rule["protocol"] != "-1":
        perm["FromPort"], perm["ToPort"] = rule["from_port"], rule["to_port"]
    return perm


def rule_present(clients: AwsClients, rule: dict[str, Any]) -> bool:
    found = clients.ec2.describe_security_groups(
        Filters=[{"Name": "group-id", "Values": [rule["group_id"]]}]
    )["SecurityGroups"]
    return any(
        (p.get("IpProtocol"), p.get("FromPort"), p.get("ToPort"))
        == (rule["protocol"], rule["from_port"], rule["to_port"])
        and any(
            pair.get("GroupId") == rule["source_group"] for pair in p.get("UserIdGroupPairs", [])
        )
        for group in found
        for p in group.get("IpPermissions", [])
    )


def admit(clients: AwsClients, rule: dict[str, Any]) -> None:
    """Add `rule` unless it is there (a retried apply)."""
    if not rule_present(clients, rule):
        clients.ec2.authorize_security_group_ingress(
            GroupId=rule["group_id"], IpPermissions=[_permission(rule)]
        )


def revoke(clients: AwsClients, rule: dict[str, Any]) -> bool:
    """Remove exactly `rule`; False when it is already gone (or its group is)."""
    if not rule_present(clients, rule):
        return False
    clients.ec2.revoke_security_group_ingress(
        GroupId=rule["group_id"], IpPermissions=[_permission(rule)]
    )
    return True
