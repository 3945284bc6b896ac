"""Keeping RDS and Redis reachable through their subnets' network ACLs when the app moves.

Security groups are half of it (tasks.data_access). A data store's subnets may also carry a
network ACL that allows the private subnets' CIDRs and nothing else: the app moved to the
public subnets would be dropped at the subnet boundary, and being stateless, an ACL needs the
return traffic allowed outbound too. So every allow entry, inbound or outbound, that names a
private CIDR gets a twin per new (public) CIDR with the same protocol and ports, numbered
just after it so it keeps its place among the ACL's rules. Each twin is a plain dict,
journaled by the step and deleted exactly by its rollback; nothing else in the ACL changes.
"""

import ipaddress
from typing import Any

from phasegate.aws import AwsClients
from phasegate.errors import AwsCallError
from phasegate.inventory import Inventory

DATA_ACL_IAM_ACTIONS = (
    "rds:DescribeDBInstances",
    "elasticache:DescribeCacheClusters",
    "elasticache:DescribeCacheSubnetGroups",
    "ec2:DescribeNetworkAcls",
    "ec2:CreateNetworkAclEntry",
    "ec2:DeleteNetworkAclEntry",
)

MAX_RULE_NUMBER = 32766  # AWS's highest user rule number; 32767 is the implicit deny


def data_store_subnets(clients: AwsClients, inventory: Inventory) -> dict[str, str]:
    """Subnet id -> the data store that lives in it (RDS subnet groups, Redis subnet groups)."""
    subnets: dict[str, str] = {}
    for db in inventory.databases:
        for found in clients.rds.describe_db_instances(DBInstanceIdentifier=db.identifier)[
            "DBInstances"
        ]:
            for subnet in found.get("DBSubnetGroup", {}).get("Subnets", []):
                subnets.setdefault(subnet["SubnetIdentifier"], f"RDS {db.identifier}")
    groups: dict[str, str] = {}
    for cache in inventory.caches:
        for member in cache.member_clusters:
            try:
                found = clients.elasticache.describe_cache_clusters(CacheClusterId=member)
            except AwsCallError as exc:
                if exc.code != "CacheClusterNotFound":
                    raise
                continue  # a member being replaced right now: the others name the group
            for cluster in found["CacheClusters"]:
                if cluster.get("CacheSubnetGroupName"):
                    groups.setdefault(cluster["CacheSubnetGroupName"], f"ElastiCache {cache.id}")
    for name, guards in sorted(groups.items()):
        described = clients.elasticache.describe_cache_subnet_groups(CacheSubnetGroupName=name)
        for group in described["CacheSubnetGroups"]:
            for subnet in group.get("Subnets", []):
                subnets.setdefault(subnet["SubnetIdentifier"], guards)
    return subnets


def _acls(clients: AwsClients, subnet_ids: list[str]) -> list[dict[str, Any]]:
    return clients.ec2.describe_network_acls(
        Filters=[{"Name": "association.subnet-id", "Values": sorted(subnet_ids)}]
    )["NetworkAcls"]


def _net(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def _ports(entry: dict[str, Any]) -> tuple[int, int] | None:
    span = entry.get("PortRange")
    return (int(span["From"]), int(span["To"])) if span else None


def _allows(entry: dict[str, Any], cidr: str, protocol: str, ports: tuple[int, int] | None) -> bool:
    """An allow entry that already lets `cidr` through for `protocol` on `ports`."""
    if entry.get("RuleAction") != "allow" or not entry.get("CidrBlock"):
        return False
    if not _net(cidr).subnet_of(_net(entry["CidrBlock"])):  # type: ignore[arg-type]
        return False
    if entry["Protocol"] == "-1":
        return True
    have = _ports(entry)
    return entry["Protocol"] == protocol and (
        have is None or (ports is not None and have[0] <= ports[0] and ports[1] <= have[1])
    )


def _denied_before(entries: list[dict[str, Any]], twin: dict[str, Any], number: int) -> int | None:
    """The number of a deny entry evaluated before `number` that catches some of the traffic
    the twin would allow (same direction, overlapping CIDR, protocol and ports)."""
    want = twin["port_range"]
    for entry in sorted(entries, key=lambda e: e["RuleNumber"]):
        if (
            entry["RuleNumber"] >= number
            or entry["Egress"] != twin["egress"]
            or entry.get("RuleAction") != "deny"
            or not entry.get("CidrBlock")
            or not _net(entry["CidrBlock"]).overlaps(_net(twin["cidr"]))  # type: ignore[arg-type]
        ):
            continue
        if "-1" in (entry["Protocol"], twin["protocol"]):
            return entry["RuleNumber"]
        have = _ports(entry)
        if entry["Protocol"] == twin["protocol"] and (
            have is None or want is None or (have[0] <= want["To"] and want["From"] <= have[1])
        ):
            return entry["RuleNumber"]
    return None


def _free_number(used: set[int], after: int) -> int | None:
    return next((n for n in range(after + 1, MAX_RULE_NUMBER + 1) if n not in used), None)


def needed_entries(
    clients: AwsClients,
    subnets: dict[str, str],
    private_cidrs: list[str],
    new_cidrs: list[str],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries to add so `new_cidrs` pass every data-store ACL the private CIDRs pass,
    and why some cannot help, one line each (no free rule number, or a deny rule before)."""
    if not subnets or not new_cidrs:
        return [], []
    needed: list[dict[str, Any]] = []
    problems: list[str] = []
    for acl in _acls(clients, list(subnets)):
        entries = [e for e in acl.get("Entries", []) if e["RuleNumber"] <= MAX_RULE_NUMBER]
        used = {(e["Egress"], e["RuleNumber"]) for e in entries}
        guarded = sorted(
            {
                subnets[a["SubnetId"]]
                for a in acl.get("Associations", [])
                if a.get("SubnetId") in subnets
            }
        )
        for entry in sorted(entries, key=lambda e: (e["Egress"], e["RuleNumber"])):
            cidr = entry.get("CidrBlock")
            if entry.get("RuleAction") != "allow" or not cidr:
                continue
            if not any(_net(cidr).overlaps(_net(p)) for p in private_cidrs):  # type: ignore[arg-type]
                continue
            ports = _ports(entry)
            for new in new_cidrs:
                if any(_allows(e, new, entry["Protocol"], ports) for e in entries):
                    continue
                numbers = {n for egress, n in used if egress == entry["Egress"]}
                number = _free_number(numbers, entry["RuleNumber"])
                direction = "outbound" if entry["Egress"] else "inbound"
                where = f"network ACL {acl['NetworkAclId']} ({', '.join(guarded)})"
                if number is None:
                    problems.append(
                        f"{where} has no free {direction} rule number after "
                        f"{entry['RuleNumber']} for {new}"
                    )
                    continue
                twin = {
                    "network_acl_id": acl["NetworkAclId"],
                    "guards": ", ".join(guarded),
                    "rule_number": number,
                    "egress": entry["Egress"],
                    "protocol": entry["Protocol"],
                    "port_range": {"From": ports[0], "To": ports[1]} if ports else None,
                    "cidr": new,
                    "because": f"rule {entry['RuleNumber']} allows {cidr}",
                }
                denied = _denied_before(entries, twin, number)
                if denied is not None:
                    problems.append(
                        f"{where}: {direction} rule {denied} denies {new} before any rule "
                        "phasegate could add; the moved app would not reach the data store"
                    )
                    continue
                used.add((entry["Egress"], number))
                entries.append(_as_entry(twin))
                needed.append(twin)
    return needed, problems


def _as_entry(twin: dict[str, Any]) -> dict[str, Any]:
    entry = {
        "RuleNumber": twin["rule_number"],
        "Egress": twin["egress"],
        "Protocol": twin["protocol"],
        "RuleAction": "allow",
        "CidrBlock": twin["cidr"],
    }
    if twin["port_range"]:
        entry["PortRange"] = twin["port_range"]
    return entry


def describe(twin: dict[str, Any]) -> str:
    """One line for a plan or a log: which ACL, which direction, what it lets through."""
    direction = "outbound to" if twin["egress"] else "inbound from"
    span = twin["port_range"]
    ports = f" ports {span['From']}-{span['To']}" if span else ""
    return (
        f"network ACL {twin['network_acl_id']} ({twin['guards']}): rule {twin['rule_number']} "
        f"allows {direction} {twin['cidr']} protocol {twin['protocol']}{ports}, as "
        f"{twin['because']}"
    )


def _found(clients: AwsClients, twin: dict[str, Any]) -> dict[str, Any] | None:
    """The ACL's entry at the twin's number and direction, whatever it says now."""
    try:
        acls = clients.ec2.describe_network_acls(NetworkAclIds=[twin["network_acl_id"]])
    except AwsCallError as exc:
        if exc.code != "InvalidNetworkAclID.NotFound":
            raise
        return None  # the ACL itself is gone, and its entries with it
    for acl in acls["NetworkAcls"]:
        for entry in acl.get("Entries", []):
            if entry["RuleNumber"] == twin["rule_number"] and entry["Egress"] == twin["egress"]:
                return entry
    return None


def entry_present(clients: AwsClients, twin: dict[str, Any]) -> bool:
    """The twin is in its ACL exactly as added (number, direction, CIDR, protocol, ports)."""
    found = _found(clients, twin)
    if found is None:
        return False
    want = _as_entry(twin)
    return all(found.get(k) == v for k, v in want.items() if k != "PortRange") and (
        _ports(found) == _ports(want)
    )


def admit(clients: AwsClients, twin: dict[str, Any]) -> None:
    """Add the twin unless it is there (a retried apply)."""
    if entry_present(clients, twin):
        return
    params: dict[str, Any] = {
        "NetworkAclId": twin["network_acl_id"],
        "RuleNumber": twin["rule_number"],
        "Egress": twin["egress"],
        "Protocol": twin["protocol"],
        "RuleAction": "allow",
        "CidrBlock": twin["cidr"],
    }
    if twin["port_range"]:
        params["PortRange"] = twin["port_range"]
    clients.ec2.create_network_acl_entry(**params)


def revoke(clients: AwsClients, twin: dict[str, Any]) -> bool:
    """Delete exactly the twin; False when it is gone, or its number now holds someone
    else's entry (left alone)."""
    if not entry_present(clients, twin):
        return False
    clients.ec2.delete_network_acl_entry(
        NetworkAclId=twin["network_acl_id"], RuleNumber=twin["rule_number"], Egress=twin["egress"]
    )
    return True
