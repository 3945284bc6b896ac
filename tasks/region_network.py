"""`regions.expand.network`: the second region's VPC, in phase 1's shape (no NAT gateway).

Public subnets in two availability zones behind an internet gateway, and nothing private:
phase 1 removed the NAT gateways because the app reaches AWS and the internet through public
IPs (security groups admit only the ALB), so the standby copy starts in that shape instead
of paying for two NAT gateways again. The VPC's CIDR is the primary's /16 moved to the other
half of 10.0.0.0/8 (10.1.0.0/16 -> 10.129.0.0/16), so the two VPCs never overlap and can be
peered later.
"""

import ipaddress
from typing import Any

from phasegate.inventory import VPC_IAM_ACTIONS, Discovery
from phasegate.steps import StepRefused
from tasks.region_common import NETWORK_STEP, PRICING_IAM_ACTIONS, RegionStep, tag_list

SUBNETS = 2


def secondary_cidr(primary: str | None) -> str:
    """The primary's 10.N.0.0/16 as 10.(N+128).0.0/16; 10.200.0.0/16 for anything else."""
    if primary:
        network = ipaddress.ip_network(primary, strict=False)
        if network.subnet_of(ipaddress.ip_network("10.0.0.0/8")) and network.prefixlen >= 16:
            second = (int(network.network_address.packed[1]) + 128) % 256
            return f"10.{second}.0.0/16"
    return "10.200.0.0/16"


class RegionNetwork(RegionStep):
    """A VPC with public subnets in two AZs, an internet gateway and its route; no NAT."""

    id = NETWORK_STEP
    title = "Second region: VPC, public subnets in two AZs, internet gateway (no NAT)"
    iam_actions = (
        *PRICING_IAM_ACTIONS,
        *VPC_IAM_ACTIONS,
        "ec2:DescribeVpcAttribute",
        "ec2:DescribeAvailabilityZones",
        "ec2:CreateVpc",
        "ec2:ModifyVpcAttribute",
        "ec2:CreateSubnet",
        "ec2:ModifySubnetAttribute",
        "ec2:CreateInternetGateway",
        "ec2:AttachInternetGateway",
        "ec2:CreateRouteTable",
        "ec2:CreateRoute",
        "ec2:AssociateRouteTable",
        "ec2:CreateTags",
        "ec2:DisassociateRouteTable",
        "ec2:DeleteRouteTable",
        "ec2:DetachInternetGateway",
        "ec2:DeleteInternetGateway",
        "ec2:DeleteSubnet",
        "ec2:DeleteVpc",
    )

    def _spec(self, resource: str, suffix: str) -> list[dict[str, Any]]:
        tags = {**self.tags(), "Name": self.name(suffix)}
        return [{"ResourceType": resource, "Tags": tag_list(tags)}]

    def _cidr(self) -> str:
        vpcs = Discovery(self.ctx.config, self.clients).vpcs()
        return secondary_cidr(vpcs[0].cidr if vpcs else None)

    def desired(self) -> dict[str, Any]:
        assert self.region is not None
        cidr = self._cidr()
        zones = self.client("ec2").describe_availability_zones()["AvailabilityZones"]
        names = sorted(z["ZoneName"] for z in zones if z.get("State", "available") == "available")
        if len(names) < SUBNETS:
            raise StepRefused(
                f"{self.where()}: {self.region} offers {len(names)} availability zone(s); the "
                f"second region needs {SUBNETS}"
            )
        base = ipaddress.ip_network(cidr)
        blocks = list(base.subnets(new_prefix=24))
        return {
            "region": self.region,
            "vpc": {"cidr": cidr, "dns_hostnames": True},
            "subnets": {
                az: {"cidr": str(blocks[i]), "public_ip_on_launch": True}
                for i, az in enumerate(names[:SUBNETS])
            },
            "internet_gateway": "attached",
            "default_route": "internet-gateway",
            "routed_subnets": SUBNETS,
            "nat_gateways": 0,
        }

    # -- reading -------------------------------------------------------------------------

    def _vpc(self, region: str) -> dict[str, Any] | None:
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in self.tags().items()]
        found = self.client("ec2", region).describe_vpcs(Filters=filters)["Vpcs"]
        return found[0] if found else None

    def current(self, region: str) -> dict[str, Any]:
        ec2 = self.client("ec2", region)
        vpc = self._vpc(region)
        if vpc is None:
            return {"region": region}
        vpc_id = vpc["VpcId"]
        hostnames = ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsHostnames")
        in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
        subnets = ec2.describe_subnets(Filters=in_vpc)["Subnets"]
        gateways = ec2.describe_internet_gateways(
            Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}]
        )["InternetGateways"]
        tables = [
            t
            for t in ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]
            if any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in t.get("Routes", []))
        ]
        routes = [
            r for t in tables for r in t["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"
        ]
        nats = ec2.describe_nat_gateways(Filter=in_vpc)["NatGateways"]
        return {
            "region": region,
            "vpc": {
                "cidr": vpc["CidrBlock"],
                "dns_hostnames": hostnames["EnableDnsHostnames"]["Value"],
            },
            "subnets": {
                s["AvailabilityZone"]: {
                    "cidr": s["CidrBlock"],
                    "public_ip_on_launch": s.get("MapPublicIpOnLaunch", False),
                }
                for s in subnets
            },
            "internet_gateway": "attached" if gateways else None,
            "default_route": "internet-gateway"
            if routes and all(r.get("GatewayId", "").startswith("igw-") for r in routes)
            else None,
            "routed_subnets": sum(
                1 for t in tables for a in t.get("Associations", []) if a.get("SubnetId")
            ),
            "nat_gateways": sum(1 for n in nats if n["State"] not in ("deleted", "deleting")),
        }

    # -- through Terraform ---------------------------------------------------------------

    def terraform_part(self) -> dict[str, Any]:
        return {
            "secondary_region": self.region,
            "enable_secondary_network": True,
            "secondary_vpc_cidr": self._cidr(),
            "secondary_tags": self.role_tags(),
        }

    def terraform_stages(self) -> list[dict[str, Any]]:
        """The region first, the network after, so a rollback (stages in reverse) destroys
        the network while the second region's provider still points at it: Terraform
        destroys with the provider as configured in that apply."""
        part = self.terraform_decisions()
        if not part:
            return []
        region = {"secondary_region": part.pop("secondary_region")}
        return [region, part]

    # -- changing ------------------------------------------------------------------------

    def describe(self, desired: dict[str, Any]) -> tuple[str, list[str], float]:
        zones = ", ".join(desired["subnets"])
        return (
            f"{desired['region']}: VPC {desired['vpc']['cidr']} with public subnets in {zones}; "
            "no NAT gateway (phase 1's shape)",
            [
                f"ec2:CreateVpc {desired['vpc']['cidr']} (DNS hostnames on)",
                f"ec2:CreateSubnet x{len(desired['subnets'])} ({zones}), public IPs on launch",
                "ec2:CreateInternetGateway + AttachInternetGateway",
                "ec2:CreateRouteTable with 0.0.0.0/0 -> the internet gateway, associated",
            ],
            self.secondary_cost("network")[0],  # free: no NAT gateway, no public IPv4 yet
        )

    def make(self, desired: dict[str, Any]) -> dict[str, Any]:
        ec2 = self.client("ec2")
        vpc = self._vpc(desired["region"])
        if vpc is None:
            vpc = ec2.create_vpc(
                CidrBlock=desired["vpc"]["cidr"], TagSpecifications=self._spec("vpc", "vpc")
            )["Vpc"]
            self.progress(vpc=vpc["VpcId"])
        vpc_id = vpc["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": True})
        ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
        gateway = self._gateway(vpc_id)
        table = self._route_table(vpc_id, gateway)
        subnets = self._subnets(vpc_id, desired["subnets"], table)
        return {"vpc": vpc_id, "internet_gateway": gateway, "route_table": table, **subnets}

    def _gateway(self, vpc_id: str) -> str:
        ec2 = self.client("ec2")
        ours = self.ec2_ids("internet-gateways", self.id)
        if ours:
            gateway = ours[0]
        else:
            gateway = ec2.create_internet_gateway(
                TagSpecifications=self._spec("internet-gateway", "igw")
            )["InternetGateway"]["InternetGatewayId"]
            self.progress(internet_gateway=gateway)
        found = ec2.describe_internet_gateways(InternetGatewayIds=[gateway])["InternetGateways"]
        if not any(a.get("VpcId") == vpc_id for a in found[0].get("Attachments", [])):
            ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc_id)
        return gateway

    def _route_table(self, vpc_id: str, gateway: str) -> str:
        ec2 = self.client("ec2")
        ours = self.ec2_ids("route-tables", self.id)
        if ours:
            table = ours[0]
        else:
            table = ec2.create_route_table(
                VpcId=vpc_id, TagSpecifications=self._spec("route-table", "public")
            )["RouteTable"]["RouteTableId"]
            self.progress(route_table=table)
        routes = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Routes"]
        if not any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in routes):
            ec2.create_route(
                RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway
            )
        return table

    def _subnets(self, vpc_id: str, wanted: dict[str, Any], table: str) -> dict[str, str]:
        ec2 = self.client("ec2")
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in self.tags().items()]
        existing = {
            s["AvailabilityZone"]: s for s in ec2.describe_subnets(Filters=filters)["Subnets"]
        }
        associations = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]
        associated = {a.get("SubnetId") for a in associations.get("Associations", [])}
        made: dict[str, str] = {}
        for az, spec in wanted.items():
            subnet = existing.get(az)
            if subnet is None:
                subnet = ec2.create_subnet(
                    VpcId=vpc_id,
                    CidrBlock=spec["cidr"],
                    AvailabilityZone=az,
                    TagSpecifications=self._spec("subnet", f"public-{az}"),
                )["Subnet"]
                self.progress(**{f"subnet_{az}": subnet["SubnetId"]})
            subnet_id = subnet["SubnetId"]
            if not subnet.get("MapPublicIpOnLaunch"):
                ec2.modify_subnet_attribute(SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": True})
            if subnet_id not in associated:
                ec2.associate_route_table(RouteTableId=table, SubnetId=subnet_id)
            made[f"subnet_{az}"] = subnet_id
        return made

    # -- undoing -------------------------------------------------------------------------

    def teardown(self, region: str) -> None:
        ec2 = self.client("ec2", region)
        for table in self.ec2_ids("route-tables", self.id, region):
            found = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]
            for association in found.get("Associations", []):
                if not association.get("Main"):
                    ec2.disassociate_route_table(
                        AssociationId=association["RouteTableAssociationId"]
                    )
            ec2.delete_route_table(RouteTableId=table)
        for gateway in self.ec2_ids("internet-gateways", self.id, region):
            found = ec2.describe_internet_gateways(InternetGatewayIds=[gateway])
            for attachment in found["InternetGateways"][0].get("Attachments", []):
                ec2.detach_internet_gateway(InternetGatewayId=gateway, VpcId=attachment["VpcId"])
            ec2.delete_internet_gateway(InternetGatewayId=gateway)
        for subnet in self.ec2_ids("subnets", self.id, region):
            ec2.delete_subnet(SubnetId=subnet)
        for vpc in self.ec2_ids("vpcs", self.id, region):
            ec2.delete_vpc(VpcId=vpc)

    def leftovers(self, region: str) -> list[str]:
        kinds = ("vpcs", "subnets", "internet-gateways", "route-tables")
        return [i for kind in kinds for i in self.ec2_ids(kind, self.id, region)]
