"""Routes, NAT gateways and VPC endpoints as nat.assess and nat.remove read and change them.

A route through a NAT gateway is not only the default route: a partner's CIDR, an IPv6 range
or a managed prefix list can be sent through the same gateway. Each is recorded here with the
destination field AWS keys it by, so nat.remove deletes exactly those routes and rollback
creates them again, pointed at the gateway that replaces the removed one.
"""

import hashlib
from typing import Any

from phasegate.aws import AwsClients

ANYWHERE = "0.0.0.0/0"
LIVE_NAT_STATES = ["pending", "available"]
GONE_NAT_STATES = ("deleted", "failed")
LIVE_ENDPOINT_STATES = ("pending", "available", "pendingacceptance")
# Marks what phasegate made, so a re-run finds it instead of making another.
REPLACES_TAG = "phasegate:replaces"
# The destination fields of a route, as DescribeRouteTables names them and CreateRoute and
# DeleteRoute take them.
DESTINATION_FIELDS = (
    "DestinationCidrBlock",
    "DestinationIpv6CidrBlock",
    "DestinationPrefixListId",
)
# Interface endpoints that workloads left in private subnets would need without a NAT.
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "logs", "secretsmanager", "ssm")


def token(*parts: str) -> str:
    """A ClientToken that is the same for the same request, so a retry makes nothing twice."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]


def tag_list(pairs: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def tag_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def s3_service(region: str) -> str:
    return f"com.amazonaws.{region}.s3"


def describe_nats(clients: AwsClients, **filters: list[str]) -> list[dict[str, Any]]:
    """NAT gateways matching `filters` (nat_gateway_id=[...], state=[...], subnet_id=[...])."""
    return [
        nat
        for page in clients.ec2.get_paginator("describe_nat_gateways").paginate(
            Filter=[{"Name": k.replace("_", "-"), "Values": v} for k, v in filters.items()]
        )
        for nat in page["NatGateways"]
    ]


def describe_route_tables(clients: AwsClients, vpc_id: str) -> list[dict[str, Any]]:
    return [
        table
        for page in clients.ec2.get_paginator("describe_route_tables").paginate(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]
        )
        for table in page["RouteTables"]
    ]


def destination(route: dict[str, Any]) -> tuple[str, str]:
    """(field, value) of a route's destination: a CIDR, an IPv6 CIDR or a prefix list."""
    for name in DESTINATION_FIELDS:
        if route.get(name):
            return name, route[name]
    return "", ""


def nat_routes(tables: list[dict[str, Any]], nat_ids: set[str]) -> list[dict[str, Any]]:
    """Every route in `tables` whose target is one of `nat_ids`, whatever its destination."""
    found = []
    for table in tables:
        for route in table.get("Routes", []):
            if route.get("NatGatewayId") in nat_ids:
                name, value = destination(route)
                found.append(
                    {
                        "route_table_id": table["RouteTableId"],
                        "destination_field": name,
                        "destination": value,
                        "nat_gateway_id": route["NatGatewayId"],
                    }
                )
    return sorted(found, key=lambda r: (r["route_table_id"], r["destination"]))


def current_route(clients: AwsClients, route: dict[str, Any]) -> dict[str, Any] | None:
    """The route now in `route`'s table for `route`'s destination, if any."""
    table = clients.ec2.describe_route_tables(RouteTableIds=[route["route_table_id"]])[
        "RouteTables"
    ][0]
    return next(
        (r for r in table["Routes"] if destination(r) == _key(route)),
        None,
    )


def _key(route: dict[str, Any]) -> tuple[str, str]:
    """A recorded route's destination; Records written before other destinations were
    recorded hold only default routes, keyed by their CIDR."""
    return route.get("destination_field", "DestinationCidrBlock"), route["destination"]


def delete_route(clients: AwsClients, route: dict[str, Any]) -> None:
    name, value = _key(route)
    clients.ec2.delete_route(RouteTableId=route["route_table_id"], **{name: value})


def point_route(clients: AwsClients, route: dict[str, Any], nat_id: str) -> bool:
    """Make `route` send its destination to `nat_id`; False when it already did."""
    current = current_route(clients, route)
    if current and current.get("NatGatewayId") == nat_id:
        return False
    name, value = _key(route)
    where = {"RouteTableId": route["route_table_id"], name: value}
    if current:
        clients.ec2.replace_route(**where, NatGatewayId=nat_id)
    else:
        clients.ec2.create_route(**where, NatGatewayId=nat_id)
    return True


def s3_endpoint(clients: AwsClients, region: str, vpc_id: str) -> dict[str, Any] | None:
    """The VPC's live S3 gateway endpoint, if it has one."""
    service = s3_service(region)
    endpoints = clients.ec2.describe_vpc_endpoints(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "service-name", "Values": [service]},
        ]
    )["VpcEndpoints"]
    return next(
        (
            e
            for e in endpoints
            if e["ServiceName"] == service
            and e.get("VpcEndpointType") == "Gateway"
            and e["State"].lower() in LIVE_ENDPOINT_STATES
        ),
        None,
    )
