"""Seed the sandbox with today's architecture (DESIGN.md), one environment at a time.

Each environment gets its own VPC (10.N.0.0/16) with public and private subnets in two AZs, an
internet gateway, one NAT gateway per AZ routed from the private route tables, an ECS Fargate
service of 2 X86_64 tasks behind an ALB running a multi-arch (amd64 + arm64) image from the
environment's own ECR repository, RDS PostgreSQL db.t3.micro and a Redis replication
group of two cache.t3.micro nodes. Every resource carries the environment's discovery tags.
Like a real Terraform stack, the data stores' security group admits the private subnets'
CIDRs (not the app's security group): moving the app out of them is what phase 1 must handle.

moto's gaps are filled here, where the seed knows what a running environment looks like:
DNS hostnames on. (ECS running == desired is the sandbox front's doing, for every service
however it was created: phasegate.sandbox.latency.)
"""

import hashlib
import json
from dataclasses import dataclass

from phasegate.aws import AwsClients

APP_REPOSITORY = "platform-api"
APP_TAG = "1.4.2"
MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
IMAGE_CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DB_PORT = 5432
REDIS_PORT = 6379
SANDBOX_DOMAIN = "sandbox.phasegate.test"


@dataclass(frozen=True)
class SeededEnvironment:
    """What the seed made: enough to write the environment's config file."""

    name: str
    region: str
    vpc_id: str
    cluster: str
    service: str


def _tags(name: str, extra: str) -> list[dict[str, str]]:
    return [{"Key": "Environment", "Value": name}, {"Key": "Name", "Value": f"{name}-{extra}"}]


def _ec2_tag_spec(resource: str, name: str, extra: str) -> list[dict]:
    return [{"ResourceType": resource, "Tags": _tags(name, extra)}]


def _digest(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def push_app_image(clients: AwsClients, name: str, tags: list[dict[str, str]]) -> str:
    """Push the app's image to `{name}/platform-api` in ECR as a multi-arch image; its URI.

    Like `docker buildx build --platform linux/amd64,linux/arm64 --push`: one manifest per
    platform (untagged, by digest), then a manifest list naming both, tagged APP_TAG. The
    layers are fakes (the sandbox runs no containers); the manifests are what the Graviton
    step reads to decide whether the image runs on arm64.
    """
    ecr = clients.ecr
    repository = f"{name}/{APP_REPOSITORY}"
    uri = ecr.create_repository(repositoryName=repository, tags=tags)["repository"]["repositoryUri"]
    platforms = []
    for arch in ("amd64", "arm64"):
        config = json.dumps({"architecture": arch, "os": "linux"}).encode()
        layer = f"{name}/{APP_REPOSITORY}:{APP_TAG} {arch} layer".encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_V2,
                "config": {
                    "mediaType": IMAGE_CONFIG,
                    "size": len(config),
                    "digest": _digest(config),
                },
                "layers": [{"mediaType": LAYER, "size": len(layer), "digest": _digest(layer)}],
            }
        )
        digest = ecr.put_image(
            repositoryName=repository,
            imageManifest=manifest,
            imageManifestMediaType=MANIFEST_V2,
            imageDigest=_digest(manifest.encode()),
        )["image"]["imageId"]["imageDigest"]
        platforms.append(
            {
                "mediaType": MANIFEST_V2,
                "size": len(manifest),
                "digest": digest,
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    manifest_list = json.dumps(
        {"schemaVersion": 2, "mediaType": MANIFEST_LIST, "manifests": platforms}
    )
    ecr.put_image(
        repositoryName=repository,
        imageManifest=manifest_list,
        imageManifestMediaType=MANIFEST_LIST,
        imageTag=APP_TAG,
        imageDigest=_digest(manifest_list.encode()),
    )
    return f"{uri}:{APP_TAG}"


def seed_environment(clients: AwsClients, name: str, index: int) -> SeededEnvironment:
    """Create one environment named `name`; `index` keeps its CIDRs apart from the others."""
    ec2 = clients.ec2
    region = clients.settings.region
    azs = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
    cidr = f"10.{index}.0.0/16"

    vpc_id = ec2.create_vpc(CidrBlock=cidr, TagSpecifications=_ec2_tag_spec("vpc", name, "vpc"))[
        "Vpc"
    ]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    igw_id = ec2.create_internet_gateway(
        TagSpecifications=_ec2_tag_spec("internet-gateway", name, "igw")
    )["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)

    public_rt = ec2.create_route_table(
        VpcId=vpc_id, TagSpecifications=_ec2_tag_spec("route-table", name, "public")
    )["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=public_rt, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw_id)

    public_subnets, private_subnets = [], []
    for i, az in enumerate(azs):
        public = ec2.create_subnet(
            VpcId=vpc_id,
            CidrBlock=f"10.{index}.{i}.0/24",
            AvailabilityZone=az,
            TagSpecifications=_ec2_tag_spec("subnet", name, f"public-{az}"),
        )["Subnet"]["SubnetId"]
        ec2.associate_route_table(RouteTableId=public_rt, SubnetId=public)
        public_subnets.append(public)

        eip = ec2.allocate_address(
            Domain="vpc", TagSpecifications=_ec2_tag_spec("elastic-ip", name, f"nat-{az}")
        )["AllocationId"]
        nat_id = ec2.create_nat_gateway(
            SubnetId=public,
            AllocationId=eip,
            TagSpecifications=_ec2_tag_spec("natgateway", name, f"nat-{az}"),
        )["NatGateway"]["NatGatewayId"]

        private = ec2.create_subnet(
            VpcId=vpc_id,
            CidrBlock=f"10.{index}.{i + 10}.0/24",
            AvailabilityZone=az,
            TagSpecifications=_ec2_tag_spec("subnet", name, f"private-{az}"),
        )["Subnet"]["SubnetId"]
        private_rt = ec2.create_route_table(
            VpcId=vpc_id, TagSpecifications=_ec2_tag_spec("route-table", name, f"private-{az}")
        )["RouteTable"]["RouteTableId"]
        ec2.create_route(
            RouteTableId=private_rt, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat_id
        )
        ec2.associate_route_table(RouteTableId=private_rt, SubnetId=private)
        private_subnets.append(private)

    alb_sg = ec2.create_security_group(
        GroupName=f"{name}-alb",
        Description="ALB: HTTP and HTTPS from anywhere",
        VpcId=vpc_id,
        TagSpecifications=_ec2_tag_spec("security-group", name, "alb"),
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=alb_sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
            for p in (80, 443)
        ],
    )
    app_sg = ec2.create_security_group(
        GroupName=f"{name}-app",
        Description="App tasks: port 8000 from the ALB",
        VpcId=vpc_id,
        TagSpecifications=_ec2_tag_spec("security-group", name, "app"),
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=app_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 8000,
                "ToPort": 8000,
                "UserIdGroupPairs": [{"GroupId": alb_sg}],
            }
        ],
    )
    data_sg = ec2.create_security_group(
        GroupName=f"{name}-data",
        Description="RDS and Redis: from the private subnets",
        VpcId=vpc_id,
        TagSpecifications=_ec2_tag_spec("security-group", name, "data"),
    )["GroupId"]
    # The common Terraform pattern: `cidr_blocks = module.vpc.private_subnets_cidr_blocks`.
    ec2.authorize_security_group_ingress(
        GroupId=data_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": port,
                "ToPort": port,
                "IpRanges": [{"CidrIp": f"10.{index}.{i + 10}.0/24"} for i in range(len(azs))],
            }
            for port in (DB_PORT, REDIS_PORT)
        ],
    )

    elbv2 = clients.elbv2
    env_tags = _tags(name, "alb")
    alb_arn = elbv2.create_load_balancer(
        Name=f"{name}-alb",
        Subnets=public_subnets,
        SecurityGroups=[alb_sg],
        Scheme="internet-facing",
        Type="application",
        Tags=env_tags,
    )["LoadBalancers"][0]["LoadBalancerArn"]
    tg_arn = elbv2.create_target_group(
        Name=f"{name}-app",
        Protocol="HTTP",
        Port=8000,
        VpcId=vpc_id,
        TargetType="ip",
        HealthCheckPath="/health",
        Tags=_tags(name, "app-tg"),
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.create_listener(
        LoadBalancerArn=alb_arn,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
    )

    image = push_app_image(clients, name, _tags(name, "platform-api"))

    log_group = f"/ecs/{name}-api"  # where the service's awslogs driver ships its output
    clients.logs.create_log_group(
        logGroupName=log_group, tags={t["Key"]: t["Value"] for t in _tags(name, "logs")}
    )
    ecs = clients.ecs
    ecs_tags = [{"key": t["Key"], "value": t["Value"]} for t in _tags(name, "ecs")]
    cluster = ecs.create_cluster(clusterName=f"{name}-cluster", tags=ecs_tags)["cluster"][
        "clusterName"
    ]
    task_def = ecs.register_task_definition(
        family=f"{name}-api",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="512",
        memory="1024",
        runtimePlatform={"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        containerDefinitions=[
            {
                "name": "api",
                "image": image,
                "memory": 1024,
                "essential": True,
                "portMappings": [{"containerPort": 8000, "protocol": "tcp"}],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": log_group,
                        "awslogs-region": region,
                        "awslogs-stream-prefix": "api",
                    },
                },
            }
        ],
        tags=ecs_tags,
    )["taskDefinition"]["taskDefinitionArn"]
    service = ecs.create_service(
        cluster=cluster,
        serviceName=f"{name}-api",
        taskDefinition=task_def,
        desiredCount=2,
        launchType="FARGATE",
        loadBalancers=[{"targetGroupArn": tg_arn, "containerName": "api", "containerPort": 8000}],
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": private_subnets,
                "securityGroups": [app_sg],
                "assignPublicIp": "DISABLED",
            }
        },
        tags=ecs_tags,
    )["service"]["serviceName"]

    rds = clients.rds
    rds.create_db_subnet_group(
        DBSubnetGroupName=f"{name}-db",
        DBSubnetGroupDescription=f"{name} database subnets",
        SubnetIds=private_subnets,
        Tags=_tags(name, "db-subnets"),
    )
    rds.create_db_instance(
        DBInstanceIdentifier=f"{name}-db",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        EngineVersion="16.4",
        AllocatedStorage=20,
        StorageType="gp3",
        MasterUsername="platform",
        MasterUserPassword="sandbox-only-password",
        DBSubnetGroupName=f"{name}-db",
        VpcSecurityGroupIds=[data_sg],
        MultiAZ=False,
        Tags=_tags(name, "db"),
    )

    elasticache = clients.elasticache
    elasticache.create_cache_subnet_group(
        CacheSubnetGroupName=f"{name}-cache",
        CacheSubnetGroupDescription=f"{name} cache subnets",
        SubnetIds=private_subnets,
    )
    elasticache.create_replication_group(
        ReplicationGroupId=f"{name}-redis",
        ReplicationGroupDescription=f"{name} Redis",
        Engine="redis",
        EngineVersion="7.1",
        CacheNodeType="cache.t3.micro",
        NumNodeGroups=1,
        ReplicasPerNodeGroup=1,
        CacheSubnetGroupName=f"{name}-cache",
        SecurityGroupIds=[data_sg],
        Tags=_tags(name, "redis"),
    )
    return SeededEnvironment(name, region, vpc_id, cluster, service)


def hosted_zone_name(name: str) -> str:
    """The public Route 53 zone the sandbox seeds for environment `name`."""
    return f"{name}.{SANDBOX_DOMAIN}."


def seed_hosted_zone(clients: AwsClients, name: str) -> str:
    """The environment's public hosted zone (regions.expand's failover records go there);
    its id. Route 53 is global: one zone per environment, whatever its region."""
    zone = clients.route53.create_hosted_zone(
        Name=hosted_zone_name(name),
        CallerReference=f"phasegate-sandbox-{name}",
        HostedZoneConfig={"Comment": f"{name}: the sandbox's public zone", "PrivateZone": False},
    )
    return str(zone["HostedZone"]["Id"])
