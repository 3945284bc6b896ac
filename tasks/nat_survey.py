"""What sits behind an environment's NAT gateways, read from AWS: both NAT steps start here.

On a real account the private subnets hold more than the demo's service: an EC2 instance
someone started by hand, a Lambda function attached to the VPC, an ECS service of another
team, EKS nodes, a CodeBuild project. Each is seen through its network interface, so the
survey classifies every interface in a subnet that routes anything through a NAT gateway
that nat.remove would delete. What would lose egress and is not moved by phasegate blocks
nat.remove, one line per interface, unless `nat.accept_egress_loss` names it.

Which NAT gateways go is decided here too: a private NAT gateway (ConnectivityType private)
carries traffic to other networks, not to the internet, and one that a route table outside
the environment routes through serves someone else; both are left alone and reported.
"""

from typing import Any

from phasegate.inventory import EcsService, Inventory, Vpc
from phasegate.steps import Step
from tasks.nat_routes import (
    LIVE_NAT_STATES,
    describe_nats,
    describe_route_tables,
    nat_routes,
    tag_dict,
)

LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]

# What the network survey reads on top of discovery (workloads in the private subnets).
SURVEY_IAM_ACTIONS = (
    "ec2:DescribeInstances",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "ecs:ListTasks",
    "ecs:DescribeTasks",
)

# Interface kinds that answer traffic but never start a connection to the internet: they
# keep working without a NAT gateway.
NEEDS_NO_EGRESS = ("rds", "elasticache", "vpc-endpoint", "load-balancer")


def interface_kind(eni: dict[str, Any]) -> str:
    """What owns a network interface, from the fields AWS sets on it."""
    kind = eni.get("InterfaceType", "interface")
    description = eni.get("Description", "")
    requester = eni.get("RequesterId", "")
    if kind == "vpc_endpoint" or description.startswith("VPC Endpoint Interface"):
        return "vpc-endpoint"
    if kind == "lambda" or description.startswith("AWS Lambda VPC ENI"):
        return "lambda"
    if description.startswith("RDSNetworkInterface") or requester == "amazon-rds":
        return "rds"
    if description.startswith("ElastiCache") or requester == "amazon-elasticache":
        return "elasticache"
    if (
        kind in ("load_balancer", "network_load_balancer", "gateway_load_balancer")
        or description.startswith("ELB ")
        or requester == "amazon-elb"
    ):
        return "load-balancer"
    if description.startswith("arn:aws:ecs:"):
        return "ecs-task"
    if eni.get("Attachment", {}).get("InstanceId") and not eni.get("RequesterManaged"):
        return "ec2-instance"
    return "unknown"


class NetworkSurvey:
    """Reads, for one environment, what sits behind its NAT gateways. Read-only."""

    def __init__(self, step: Step) -> None:
        self.ctx = step.ctx
        self.clients = step.clients
        self.env = step.ctx.config.name
        self.tags = step.ctx.config.discovery.tags
        self.accepted = set(step.ctx.config.nat.accept_egress_loss)
        self.inventory: Inventory | None = None
        self.nat_interfaces: set[str] = set()  # the gateways' own: never a workload

    # ------------------------------------------------------------------ NAT gateways

    def nat_gateways(self, vpc: Vpc) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The VPC's live NAT gateways: (those nat.remove deletes, those it leaves alone, why)."""
        described = describe_nats(
            self.clients,
            vpc_id=[vpc.id],
            state=LIVE_NAT_STATES,
        )
        self.nat_interfaces |= {
            a["NetworkInterfaceId"]
            for n in described
            for a in n.get("NatGatewayAddresses", [])
            if a.get("NetworkInterfaceId")
        }
        tables = describe_route_tables(self.clients, vpc.id)
        foreign = {
            route["nat_gateway_id"]: table["RouteTableId"]
            for table in tables
            if not self._ours(table)
            for route in nat_routes([table], {n["NatGatewayId"] for n in described})
        }
        removable, left = [], []
        for nat in sorted(described, key=lambda n: n["NatGatewayId"]):
            nat_id = nat["NatGatewayId"]
            if nat.get("ConnectivityType", "public") == "private":
                left.append(
                    {"id": nat_id, "why": "private NAT gateway: no internet egress to remove"}
                )
            elif nat_id in foreign:
                left.append(
                    {
                        "id": nat_id,
                        "why": f"route table {foreign[nat_id]} outside the environment "
                        "(without its discovery tags) routes through it",
                    }
                )
            else:
                removable.append(nat)
        return removable, left

    def _ours(self, resource: dict[str, Any]) -> bool:
        have = tag_dict(resource.get("Tags"))
        return all(have.get(k) == v for k, v in self.tags.items())

    # ------------------------------------------------------------------ interfaces

    def task_interfaces(self) -> dict[str, dict[str, str]]:
        """Network interface id -> the ECS task's cluster and service, across the account."""
        ecs = self.clients.ecs
        found: dict[str, dict[str, str]] = {}
        for cluster in ecs.list_clusters().get("clusterArns", []):
            arns = [
                arn
                for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster)
                for arn in page["taskArns"]
            ]
            for start in range(0, len(arns), 100):
                tasks = ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100])
                for task in tasks["tasks"]:
                    group = task.get("group", "")
                    service = group.split(":", 1)[1] if group.startswith("service:") else ""
                    for attachment in task.get("attachments", []):
                        details = {d["name"]: d["value"] for d in attachment.get("details", [])}
                        if details.get("networkInterfaceId"):
                            found[details["networkInterfaceId"]] = {
                                "cluster": cluster.rsplit("/", 1)[-1],
                                "service": service,
                            }
        return found

    def interfaces(self, subnet_ids: list[str]) -> list[dict[str, Any]]:
        """Every network interface in `subnet_ids`, with its kind and its owner's tags."""
        if not subnet_ids:
            return []
        ec2 = self.clients.ec2
        enis = [
            eni
            for page in ec2.get_paginator("describe_network_interfaces").paginate(
                Filters=[{"Name": "subnet-id", "Values": sorted(subnet_ids)}]
            )
            for eni in page["NetworkInterfaces"]
            if eni.get("InterfaceType") != "nat_gateway"
            and eni["NetworkInterfaceId"] not in self.nat_interfaces
        ]
        instance_ids = sorted(
            {
                e["Attachment"]["InstanceId"]
                for e in enis
                if e.get("Attachment", {}).get("InstanceId")
            }
        )
        instances = self._instances(instance_ids)
        tasks = self.task_interfaces()
        found = []
        for eni in sorted(enis, key=lambda e: e["NetworkInterfaceId"]):
            eni_id = eni["NetworkInterfaceId"]
            kind = "ecs-task" if eni_id in tasks else interface_kind(eni)
            instance_id = eni.get("Attachment", {}).get("InstanceId")
            if instance_id and instance_id not in instances:
                continue  # its instance is terminated or shutting down: no workload is left
            instance = instances.get(instance_id or "", {})
            owner = {**tag_dict(eni.get("TagSet")), **instance.get("tags", {})}
            found.append(
                {
                    "id": eni_id,
                    "kind": kind,
                    "description": eni.get("Description", ""),
                    "subnet_id": eni["SubnetId"],
                    "requester": eni.get("RequesterId", ""),
                    "instance_id": instance_id,
                    "autoscaling_group": instance.get("autoscaling_group"),
                    "task": tasks.get(eni_id),
                    "owner_tags": owner,
                }
            )
        return found

    def _instances(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Instance id -> its tags and Auto Scaling group."""
        if not ids:
            return {}
        ec2 = self.clients.ec2
        found = {
            i["InstanceId"]: {"tags": tag_dict(i.get("Tags"))}
            for page in ec2.get_paginator("describe_instances").paginate(
                Filters=[
                    {"Name": "instance-id", "Values": ids},
                    {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES},
                ]
            )
            for reservation in page["Reservations"]
            for i in reservation["Instances"]
        }
        live = sorted(found)
        for start in range(0, len(live), 50):
            described = self.clients.autoscaling.describe_auto_scaling_instances(
                InstanceIds=live[start : start + 50]
            )["AutoScalingInstances"]
            for a in described:
                found[a["InstanceId"]]["autoscaling_group"] = a["AutoScalingGroupName"]
        return found

    def foreign_services(self, subnet_ids: set[str], ours: set[str]) -> list[dict[str, Any]]:
        """ECS services outside the environment (not in `ours`, by ARN) placed in `subnet_ids`:
        their tasks lose egress too, whether or not their interfaces are running right now."""
        ecs = self.clients.ecs
        found = []
        for cluster in ecs.list_clusters().get("clusterArns", []):
            arns = [
                arn
                for page in ecs.get_paginator("list_services").paginate(cluster=cluster)
                for arn in page["serviceArns"]
                if arn not in ours
            ]
            for start in range(0, len(arns), 10):
                for svc in ecs.describe_services(
                    cluster=cluster, services=arns[start : start + 10]
                )["services"]:
                    net = svc.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
                    inside = sorted(set(net.get("subnets", [])) & subnet_ids)
                    if inside and svc.get("status") != "INACTIVE":
                        found.append(
                            {
                                "arn": svc["serviceArn"],
                                "id": f"{cluster.rsplit('/', 1)[-1]}/{svc['serviceName']}",
                                "subnet_ids": inside,
                                "tags": {t["key"]: t["value"] for t in svc.get("tags", [])},
                            }
                        )
        return found

    # ------------------------------------------------------------------ the move

    def alb_security_groups(self, target_groups: list[str]) -> list[str]:
        """The security groups of the load balancers in front of `target_groups`."""
        if not target_groups:
            return []
        elbv2 = self.clients.elbv2
        groups = elbv2.describe_target_groups(TargetGroupArns=target_groups)["TargetGroups"]
        lb_arns = sorted({arn for g in groups for arn in g.get("LoadBalancerArns", [])})
        if not lb_arns:
            return []
        lbs = elbv2.describe_load_balancers(LoadBalancerArns=lb_arns)["LoadBalancers"]
        return sorted({sg for lb in lbs for sg in lb.get("SecurityGroups", [])})

    def container_ports(self, service: EcsService) -> list[int]:
        described = self.clients.ecs.describe_services(
            cluster=service.cluster, services=[service.name]
        )["services"]
        return sorted(
            {
                lb["containerPort"]
                for svc in described
                for lb in svc.get("loadBalancers", [])
                if lb.get("containerPort")
            }
        )

    def admits_only(self, group_ids: list[str], sources: list[str], ports: list[int]) -> bool:
        """True when the groups' ingress admits nothing but `sources`, and them on `ports`."""
        if not group_ids or not sources:
            return False
        groups = self.clients.ec2.describe_security_groups(GroupIds=group_ids)["SecurityGroups"]
        covered: set[int] = set()
        for group in groups:
            for perm in group.get("IpPermissions", []):
                if perm.get("IpRanges") or perm.get("Ipv6Ranges") or perm.get("PrefixListIds"):
                    return False
                pairs = perm.get("UserIdGroupPairs", [])
                if any(p.get("GroupId") not in sources for p in pairs):
                    return False
                low, high = perm.get("FromPort", 0), perm.get("ToPort", 65535)
                every_port = perm.get("IpProtocol") == "-1"
                covered |= {p for p in ports if every_port or low <= p <= high}
        return covered == set(ports)

    def referenced_by(self, group_ids: list[str], vpc_id: str) -> list[str]:
        """Security groups in `vpc_id` whose ingress names one of `group_ids` as its source."""
        if not group_ids:
            return []
        groups = self.clients.ec2.describe_security_groups(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc_id]},
                {"Name": "ip-permission.group-id", "Values": sorted(group_ids)},
            ]
        )["SecurityGroups"]
        return sorted(g["GroupId"] for g in groups if g["GroupId"] not in group_ids)

    def app_security_group(self, vpc_id: str) -> dict[str, Any] | None:
        """The `{env}-app-public` group phasegate makes, if it exists in `vpc_id`."""
        groups = self.clients.ec2.describe_security_groups(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc_id]},
                {"Name": "group-name", "Values": [f"{self.env}-app-public"]},
            ]
        )["SecurityGroups"]
        return groups[0] if groups else None

    def service_move(
        self, service: EcsService, vpc: Vpc, private: dict[str, str]
    ) -> tuple[dict[str, Any] | None, str | None]:
        """How to move `service` out of the private subnets: (move, None) or (None, why not)."""
        label = f"ECS service {service.cluster}/{service.name}"
        by_id = {s.id: s for s in vpc.subnets}
        alb_sgs = self.alb_security_groups(service.target_groups)
        if not alb_sgs:
            return None, (
                f"{label} in private subnets "
                f"{', '.join(sorted(set(service.subnets) & private.keys()))} "
                "would lose egress and is not behind a load balancer, so phasegate will not "
                "give its tasks public IPs"
            )
        lbs = self.inventory.load_balancers if self.inventory else []
        preferred = {s for lb in lbs for s in lb.subnets}
        public_by_az = _public_subnet_by_az(vpc, preferred)
        targets: list[str] = []
        for subnet_id in service.subnets:
            subnet = by_id.get(subnet_id)
            if subnet is None or subnet_id not in private:
                targets.append(subnet_id)
                continue
            public = public_by_az.get(subnet.availability_zone)
            if public is None:
                return None, (
                    f"{label} in private subnet {subnet_id} would lose egress: there is no public "
                    f"subnet in {subnet.availability_zone} to move it to"
                )
            targets.append(public)
        ports = self.container_ports(service)
        if not ports:
            return None, f"{label} has no container port behind its load balancer to admit"
        reuse = self.admits_only(service.security_groups, alb_sgs, ports)
        if not reuse:
            users = self.referenced_by(service.security_groups, vpc.id)
            if users:
                return None, (
                    f"{label}: its security groups {', '.join(service.security_groups)} admit "
                    f"more than the ALB, and {', '.join(users)} admit traffic from them; "
                    "replacing them with an ALB-only group would cut that access"
                )
        return {
            "cluster": service.cluster,
            "name": service.name,
            "arn": service.arn,
            "vpc_id": vpc.id,
            "subnets": sorted(dict.fromkeys(targets)),
            "security_groups": service.security_groups if reuse else None,
            "assign_public_ip": True,
            "alb_security_groups": alb_sgs,
            "container_ports": ports,
        }, None

    # ------------------------------------------------------------------ the picture

    def picture(self, inventory: Inventory) -> dict[str, Any]:
        """Per VPC: NAT gateways (removed or left alone), every route through the removed
        ones, the subnets behind them and each interface there; moves, blockers, accepted."""
        self.inventory = inventory
        vpcs = []
        moves: list[dict[str, Any]] = []
        blockers: list[str] = []
        accepted: list[str] = []
        ours = {s.arn for s in inventory.services}
        for vpc in inventory.vpcs:
            removable, left = self.nat_gateways(vpc)
            nat_ids = {n["NatGatewayId"] for n in removable}
            routes = nat_routes(
                [t for t in describe_route_tables(self.clients, vpc.id) if self._ours(t)],
                nat_ids,
            )
            tables = {r["route_table_id"] for r in routes}
            private = {
                s.id: next(r["nat_gateway_id"] for r in routes if r["route_table_id"] == t)
                for s in vpc.subnets
                if (t := s.route_table_id) in tables
            }
            services = [s for s in inventory.services if set(s.subnets) & private.keys()]
            moved: dict[tuple[str, str], bool] = {}
            workloads: list[dict[str, Any]] = []
            for service in services:
                move, why = self.service_move(service, vpc, private)
                moved[(service.cluster, service.name)] = move is not None
                if move:
                    moves.append(move)
                else:
                    blockers.append(why or "")
                workloads.append(
                    {
                        "kind": "ecs-service",
                        "id": f"{service.cluster}/{service.name}",
                        "name": service.name,
                        "subnet_ids": sorted(set(service.subnets) & private.keys()),
                        "movable": move is not None,
                        "note": "moves to public subnets with assignPublicIp" if move else why,
                    }
                )
            seen_services: set[str] = set()
            for eni in self.interfaces(sorted(private)):
                task = eni["task"]
                if task and moved.get((task["cluster"], task["service"])):
                    continue  # one of the moved services' own tasks
                if task:
                    seen_services.add(f"{task['cluster']}/{task['service']}")
                line = self._interface_line(eni)
                self._judge(eni, line, blockers, accepted)
                workloads.append(
                    {
                        "kind": eni["kind"],
                        "id": eni["id"],
                        "name": eni["description"],
                        "subnet_ids": [eni["subnet_id"]],
                        "movable": eni["kind"] in NEEDS_NO_EGRESS,
                        "note": line,
                    }
                )
            for svc in self.foreign_services(set(private), ours):
                if svc["id"] in seen_services:
                    continue  # its interfaces are listed one by one above
                line = (
                    f"ECS service {svc['id']} (not this environment's: no discovery tags) in "
                    f"private subnets {', '.join(svc['subnet_ids'])} would lose egress; owner "
                    f"tags {svc['tags'] or 'none'}"
                )
                if {svc["arn"], svc["id"]} & self.accepted:
                    accepted.append(line)
                else:
                    blockers.append(line)
                workloads.append(
                    {
                        "kind": "ecs-service",
                        "id": svc["id"],
                        "name": svc["arn"],
                        "subnet_ids": svc["subnet_ids"],
                        "movable": False,
                        "note": line,
                    }
                )
            vpcs.append(
                {
                    "vpc": vpc,
                    "nat_gateways": removable,
                    "left_alone": left,
                    "nat_routes": routes,
                    "private_subnets": private,
                    "workloads": workloads,
                }
            )
        return {"vpcs": vpcs, "moves": moves, "blockers": blockers, "accepted": accepted}

    def _interface_line(self, eni: dict[str, Any]) -> str:
        """One line naming the interface: id, type, description, subnet, owner tags."""
        what = eni["kind"]
        if eni["instance_id"]:
            what += f" {eni['instance_id']}"
            if eni["autoscaling_group"]:
                what += f" of Auto Scaling group {eni['autoscaling_group']}"
        if eni["task"]:
            what += f" of ECS service {eni['task']['cluster']}/{eni['task']['service'] or '-'}"
        verdict = (
            "needs no egress"
            if eni["kind"] in NEEDS_NO_EGRESS
            else "would lose egress and phasegate does not move it"
        )
        return (
            f"interface {eni['id']} ({what}, {eni['description'] or 'no description'!r}) in "
            f"private subnet {eni['subnet_id']} {verdict}; requester "
            f"{eni['requester'] or '-'}, owner tags {eni['owner_tags'] or 'none'}"
        )

    def _judge(self, eni: dict[str, Any], line: str, blockers: list[str], accepted: list[str]):
        if eni["kind"] in NEEDS_NO_EGRESS:
            return
        if {eni["id"], eni["requester"]} & self.accepted:
            accepted.append(line)
        else:
            blockers.append(line)


def _public_subnet_by_az(vpc: Vpc, preferred: set[str]) -> dict[str, str]:
    """One public subnet per AZ, preferring the ALB's own subnets (the ones already serving)."""
    chosen: dict[str, str] = {}
    for subnet in sorted(
        (s for s in vpc.subnets if s.public), key=lambda s: (s.id not in preferred, s.cidr)
    ):
        chosen.setdefault(subnet.availability_zone, subnet.id)
    return chosen
