"""Discovery: what belongs to an environment, found by its tags and read from AWS.

An Inventory is a plain, serialisable picture of one environment. Steps observe through it,
the cost model prices it, and rollback tests compare two of them field by field, so it holds
what matters to the migration and nothing that changes on every read.
"""

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig


class Route(BaseModel):
    destination: str
    target_type: str
    target_id: str


class RouteTable(BaseModel):
    id: str
    subnet_ids: list[str]
    routes: list[Route]

    def default_route(self) -> Route | None:
        return next((r for r in self.routes if r.destination == "0.0.0.0/0"), None)


class Subnet(BaseModel):
    id: str
    availability_zone: str
    cidr: str
    public: bool
    route_table_id: str | None
    name: str | None = None


class NatGateway(BaseModel):
    id: str
    state: str
    subnet_id: str
    allocation_ids: list[str]
    public_ips: list[str]


class Vpc(BaseModel):
    id: str
    cidr: str
    subnets: list[Subnet]
    route_tables: list[RouteTable]
    internet_gateways: list[str]
    nat_gateways: list[NatGateway]
    vpc_endpoints: list[str] = Field(default_factory=list)


class EcsService(BaseModel):
    cluster: str
    name: str
    arn: str
    task_definition: str
    architecture: str
    cpu: int
    memory: int
    images: list[str]
    desired: int
    running: int
    launch_type: str | None
    capacity_provider_strategy: list[dict[str, Any]]
    subnets: list[str]
    security_groups: list[str]
    assign_public_ip: bool
    target_groups: list[str]


class TargetGroup(BaseModel):
    arn: str
    name: str
    target_type: str
    port: int | None


class LoadBalancer(BaseModel):
    arn: str
    name: str
    dns_name: str
    scheme: str
    subnets: list[str]
    security_groups: list[str]
    target_groups: list[TargetGroup]


class Database(BaseModel):
    identifier: str
    arn: str
    instance_class: str
    engine: str
    engine_version: str
    multi_az: bool
    allocated_storage_gb: int
    storage_type: str
    status: str
    parameter_group: str | None = None
    replica_source: str | None = None  # a read replica's source (an ARN across regions)


class CacheGroup(BaseModel):
    id: str
    arn: str
    node_type: str
    node_count: int
    engine_version: str | None
    status: str
    member_clusters: list[str]


class AutoScalingGroup(BaseModel):
    name: str
    arn: str
    min_size: int
    max_size: int
    desired: int
    instance_types: list[str]
    in_service: int
    subnets: list[str]
    target_groups: list[str]
    launch_template: str | None


class Inventory(BaseModel):
    """Everything discovery found for one environment."""

    environment: str
    region: str
    vpcs: list[Vpc]
    services: list[EcsService]
    load_balancers: list[LoadBalancer]
    databases: list[Database]
    caches: list[CacheGroup]
    autoscaling_groups: list[AutoScalingGroup]

    @property
    def nat_gateways(self) -> list[NatGateway]:
        return [n for vpc in self.vpcs for n in vpc.nat_gateways]

    @property
    def subnets(self) -> list[Subnet]:
        return [s for vpc in self.vpcs for s in vpc.subnets]


def _tag_dict(tags: Iterable[dict[str, str]] | None) -> dict[str, str]:
    """AWS spells tags Key/Value or key/value depending on the service."""
    return {t.get("Key", t.get("key", "")): t.get("Value", t.get("value", "")) for t in tags or []}


def _matches(tags: Iterable[dict[str, str]] | None, wanted: dict[str, str]) -> bool:
    have = _tag_dict(tags)
    return all(have.get(k) == v for k, v in wanted.items())


def _ec2_filters(wanted: dict[str, str]) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{k}", "Values": [v]} for k, v in wanted.items()]


def _paginate(client: Any, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
    return [
        item for page in client.get_paginator(operation).paginate(**params) for item in page[key]
    ]


# The IAM actions each Discovery reader below calls. They live here, beside the calls, because
# a step's `iam_actions` (the policy an operator grants it, which tests hold to every call the
# step makes) must grow the day a reader calls something new: steps build on these tuples
# rather than copy them. A step that reads through only some readers takes only their tuples.
VPC_IAM_ACTIONS = (
    "ec2:DescribeVpcs",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSubnets",
    "ec2:DescribeInternetGateways",
    "ec2:DescribeNatGateways",
    "ec2:DescribeVpcEndpoints",
)
SERVICE_IAM_ACTIONS = (
    "ecs:ListClusters",
    "ecs:DescribeClusters",
    "ecs:ListServices",
    "ecs:DescribeServices",
    "ecs:DescribeTaskDefinition",
)
LOAD_BALANCER_IAM_ACTIONS = (
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:DescribeTargetGroups",
)
DATABASE_IAM_ACTIONS = ("rds:DescribeDBInstances",)
CACHE_IAM_ACTIONS = ("elasticache:DescribeReplicationGroups", "elasticache:ListTagsForResource")
AUTOSCALING_IAM_ACTIONS = ("autoscaling:DescribeAutoScalingGroups",)
# What a whole inventory (Discovery.inventory, discover) reads.
DISCOVERY_IAM_ACTIONS = (
    *VPC_IAM_ACTIONS,
    *SERVICE_IAM_ACTIONS,
    *LOAD_BALANCER_IAM_ACTIONS,
    *DATABASE_IAM_ACTIONS,
    *CACHE_IAM_ACTIONS,
    *AUTOSCALING_IAM_ACTIONS,
)


class Discovery:
    """Reads one environment's resources; one instance per environment, safe to reuse."""

    def __init__(self, config: EnvironmentConfig, clients: AwsClients) -> None:
        self.config = config
        self.clients = clients
        self.tags = config.discovery.tags

    def inventory(self) -> Inventory:
        return Inventory(
            environment=self.config.name,
            region=self.config.aws.region,
            vpcs=self.vpcs(),
            services=self.services(),
            load_balancers=self.load_balancers(),
            databases=self.databases(),
            caches=self.caches(),
            autoscaling_groups=self.autoscaling_groups(),
        )

    def vpcs(self) -> list[Vpc]:
        ec2 = self.clients.ec2
        found = []
        for vpc in ec2.describe_vpcs(Filters=_ec2_filters(self.tags))["Vpcs"]:
            by_vpc = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
            tables = _paginate(ec2, "describe_route_tables", "RouteTables", Filters=by_vpc)
            route_tables = [self._route_table(t) for t in tables]
            main = next(
                (
                    t["RouteTableId"]
                    for t in tables
                    if any(a.get("Main") for a in t["Associations"])
                ),
                None,
            )
            table_of = {s: t for t in route_tables for s in t.subnet_ids}
            subnets = []
            for s in _paginate(ec2, "describe_subnets", "Subnets", Filters=by_vpc):
                table = table_of.get(s["SubnetId"]) or next(
                    (t for t in route_tables if t.id == main), None
                )
                default = table.default_route() if table else None
                subnets.append(
                    Subnet(
                        id=s["SubnetId"],
                        availability_zone=s["AvailabilityZone"],
                        cidr=s["CidrBlock"],
                        public=bool(
                            default
                            and default.target_type == "gateway"
                            and default.target_id.startswith("igw-")
                        ),
                        route_table_id=table.id if table else None,
                        name=_tag_dict(s.get("Tags")).get("Name"),
                    )
                )
            igws = ec2.describe_internet_gateways(
                Filters=[{"Name": "attachment.vpc-id", "Values": [vpc["VpcId"]]}]
            )["InternetGateways"]
            nats = _paginate(
                ec2,
                "describe_nat_gateways",
                "NatGateways",
                Filter=[*by_vpc, {"Name": "state", "Values": ["pending", "available"]}],
            )
            endpoints = ec2.describe_vpc_endpoints(Filters=by_vpc)["VpcEndpoints"]
            found.append(
                Vpc(
                    id=vpc["VpcId"],
                    cidr=vpc["CidrBlock"],
                    subnets=sorted(subnets, key=lambda s: s.cidr),
                    route_tables=route_tables,
                    internet_gateways=[g["InternetGatewayId"] for g in igws],
                    nat_gateways=[
                        NatGateway(
                            id=n["NatGatewayId"],
                            state=n["State"],
                            subnet_id=n["SubnetId"],
                            allocation_ids=[
                                a["AllocationId"]
                                for a in n["NatGatewayAddresses"]
                                if a.get("AllocationId")  # a private NAT gateway has none
                            ],
                            public_ips=[a.get("PublicIp", "") for a in n["NatGatewayAddresses"]],
                        )
                        for n in nats
                    ],
                    vpc_endpoints=sorted(
                        e["ServiceName"] for e in endpoints if e["State"].lower() != "deleted"
                    ),
                )
            )
        return found

    @staticmethod
    def _route_table(table: dict[str, Any]) -> RouteTable:
        routes = []
        for r in table["Routes"]:
            destination = r.get("DestinationCidrBlock") or r.get("DestinationPrefixListId", "")
            for key, kind in (
                ("NatGatewayId", "nat"),
                ("GatewayId", "gateway"),
                ("InstanceId", "instance"),
                ("NetworkInterfaceId", "eni"),
                ("TransitGatewayId", "transit"),
                ("VpcPeeringConnectionId", "peering"),
            ):
                if r.get(key):
                    routes.append(
                        Route(destination=destination, target_type=kind, target_id=r[key])
                    )
                    break
        return RouteTable(
            id=table["RouteTableId"],
            subnet_ids=[a["SubnetId"] for a in table["Associations"] if a.get("SubnetId")],
            routes=routes,
        )

    def services(self) -> list[EcsService]:
        ecs = self.clients.ecs
        arns = _paginate(ecs, "list_clusters", "clusterArns")
        if not arns:
            return []
        found = []
        clusters = ecs.describe_clusters(clusters=arns, include=["TAGS"])["clusters"]
        for cluster in clusters:
            if not _matches(cluster.get("tags"), self.tags):
                continue
            service_arns = _paginate(
                ecs, "list_services", "serviceArns", cluster=cluster["clusterArn"]
            )
            for i in range(0, len(service_arns), 10):
                described = ecs.describe_services(
                    cluster=cluster["clusterArn"],
                    services=service_arns[i : i + 10],
                    include=["TAGS"],
                )["services"]
                for svc in described:
                    if svc.get("status") == "ACTIVE" and _matches(svc.get("tags"), self.tags):
                        found.append(self._service(cluster["clusterName"], svc))
        return found

    def _service(self, cluster: str, svc: dict[str, Any]) -> EcsService:
        task_def = self.clients.ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])[
            "taskDefinition"
        ]
        network = svc.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
        return EcsService(
            cluster=cluster,
            name=svc["serviceName"],
            arn=svc["serviceArn"],
            task_definition=task_def["taskDefinitionArn"],
            architecture=task_def.get("runtimePlatform", {}).get("cpuArchitecture", "X86_64"),
            cpu=int(task_def.get("cpu", 0)),
            memory=int(task_def.get("memory", 0)),
            images=[c["image"] for c in task_def["containerDefinitions"]],
            desired=svc["desiredCount"],
            running=svc["runningCount"],
            launch_type=svc.get("launchType"),
            capacity_provider_strategy=svc.get("capacityProviderStrategy", []),
            subnets=sorted(network.get("subnets", [])),
            security_groups=sorted(network.get("securityGroups", [])),
            assign_public_ip=network.get("assignPublicIp") == "ENABLED",
            target_groups=[lb["targetGroupArn"] for lb in svc.get("loadBalancers", [])],
        )

    def load_balancers(self) -> list[LoadBalancer]:
        elbv2 = self.clients.elbv2
        lbs = _paginate(elbv2, "describe_load_balancers", "LoadBalancers")
        if not lbs:
            return []
        tags: dict[str, list[dict[str, str]]] = {}
        for i in range(0, len(lbs), 20):
            arns = [lb["LoadBalancerArn"] for lb in lbs[i : i + 20]]
            for desc in elbv2.describe_tags(ResourceArns=arns)["TagDescriptions"]:
                tags[desc["ResourceArn"]] = desc.get("Tags", [])
        found = []
        for lb in lbs:
            if not _matches(tags.get(lb["LoadBalancerArn"]), self.tags):
                continue
            groups = elbv2.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])[
                "TargetGroups"
            ]
            found.append(
                LoadBalancer(
                    arn=lb["LoadBalancerArn"],
                    name=lb["LoadBalancerName"],
                    dns_name=lb.get("DNSName", ""),
                    scheme=lb.get("Scheme", ""),
                    subnets=sorted(z["SubnetId"] for z in lb.get("AvailabilityZones", [])),
                    security_groups=sorted(lb.get("SecurityGroups", [])),
                    target_groups=[
                        TargetGroup(
                            arn=g["TargetGroupArn"],
                            name=g["TargetGroupName"],
                            target_type=g.get("TargetType", "instance"),
                            port=g.get("Port"),
                        )
                        for g in groups
                    ],
                )
            )
        return found

    def databases(self) -> list[Database]:
        found = []
        for db in _paginate(self.clients.rds, "describe_db_instances", "DBInstances"):
            if not _matches(db.get("TagList"), self.tags):
                continue
            groups = db.get("DBParameterGroups") or [{}]
            found.append(
                Database(
                    identifier=db["DBInstanceIdentifier"],
                    arn=db["DBInstanceArn"],
                    instance_class=db["DBInstanceClass"],
                    engine=db["Engine"],
                    engine_version=db["EngineVersion"],
                    multi_az=db.get("MultiAZ", False),
                    allocated_storage_gb=db.get("AllocatedStorage", 0),
                    storage_type=db.get("StorageType", "gp2"),
                    status=db["DBInstanceStatus"],
                    parameter_group=groups[0].get("DBParameterGroupName"),
                    replica_source=db.get("ReadReplicaSourceDBInstanceIdentifier"),
                )
            )
        return found

    def caches(self) -> list[CacheGroup]:
        elasticache = self.clients.elasticache
        found = []
        for group in _paginate(elasticache, "describe_replication_groups", "ReplicationGroups"):
            tags = elasticache.list_tags_for_resource(ResourceName=group["ARN"])["TagList"]
            if not _matches(tags, self.tags):
                continue
            members = group.get("MemberClusters", [])
            found.append(
                CacheGroup(
                    id=group["ReplicationGroupId"],
                    arn=group["ARN"],
                    node_type=group.get("CacheNodeType", ""),
                    node_count=len(members),
                    engine_version=group.get("EngineVersion"),
                    status=group["Status"],
                    member_clusters=members,
                )
            )
        return found

    def autoscaling_groups(self) -> list[AutoScalingGroup]:
        autoscaling = self.clients.autoscaling
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in self.tags.items()]
        found = []
        groups = _paginate(
            autoscaling, "describe_auto_scaling_groups", "AutoScalingGroups", Filters=filters
        )
        for g in groups:
            template = g.get("LaunchTemplate") or g.get("MixedInstancesPolicy", {}).get(
                "LaunchTemplate", {}
            ).get("LaunchTemplateSpecification", {})
            types = sorted({i.get("InstanceType", "") for i in g.get("Instances", [])} - {""})
            found.append(
                AutoScalingGroup(
                    name=g["AutoScalingGroupName"],
                    arn=g["AutoScalingGroupARN"],
                    min_size=g["MinSize"],
                    max_size=g["MaxSize"],
                    desired=g["DesiredCapacity"],
                    instance_types=types,
                    in_service=sum(
                        1 for i in g.get("Instances", []) if i["LifecycleState"] == "InService"
                    ),
                    subnets=sorted(s for s in g.get("VPCZoneIdentifier", "").split(",") if s),
                    target_groups=g.get("TargetGroupARNs", []),
                    launch_template=template.get("LaunchTemplateName")
                    or template.get("LaunchTemplateId"),
                )
            )
        return found


def discover(config: EnvironmentConfig, clients: AwsClients | None = None) -> Inventory:
    """The inventory of `config`'s environment."""
    return Discovery(config, clients or AwsClients(config.aws)).inventory()
