"""Phase 1, network: assess the NAT gateways, then remove them without cutting anyone off.

NAT gateways are about $90 of a $200-255 environment: two gateway-hours around the clock plus
a charge per GB processed. The only workloads that need them are the ones in the private
subnets (the ECS tasks). Those tasks can reach the internet from the public subnets with a
public IP instead, behind a security group that admits only the ALB; S3 traffic goes through
a free gateway endpoint. After that the NAT gateways carry nothing and can go.

Two steps:

- `NatAssessment` (`nat.assess`) reads and reports: per NAT gateway its 7-day traffic, the
  route tables and subnets behind it, the workloads there, and the VPC endpoints those
  workloads would need without a NAT. It changes nothing in AWS; inside a Prefect run it
  publishes the report as a markdown artifact.
- `NatRemoval` (`nat.remove`) does the move, in an order that never leaves a workload
  without egress: services first, then the S3 endpoint, then the routes, then the gateways,
  then their Elastic IPs. It refuses, before changing anything, when a workload in a private
  subnet would lose egress and phasegate cannot move it.
"""

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from phasegate.cost import load_price_table, price_inventory
from phasegate.errors import PhasegateError
from phasegate.inventory import DISCOVERY_IAM_ACTIONS, EcsService, Inventory, Vpc
from phasegate.steps import (
    CREATED_BY_TAG,
    Change,
    Observation,
    Record,
    Reversibility,
    Settling,
    Step,
    StepRefused,
    VerificationFailed,
    diff_entry,
)
from tasks.security_groups import delete_security_group

ANYWHERE = "0.0.0.0/0"
LIVE_NAT_STATES = ["pending", "available"]
GONE_NAT_STATES = ("deleted", "failed")
LIVE_ENDPOINT_STATES = ("pending", "available", "pendingacceptance")
LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]
TRAFFIC_DAYS = 7
TRAFFIC_METRIC = ("AWS/NATGateway", "BytesOutToDestination", "NatGatewayId")
UNKNOWN = "unknown"
# Marks what phasegate made, so a re-run finds it instead of making another.
REPLACES_TAG = "phasegate:replaces"

# What the network survey reads on top of discovery (workloads in the private subnets).
SURVEY_IAM_ACTIONS = (
    "ec2:DescribeInstances",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "autoscaling:DescribeAutoScalingInstances",
)


def _token(*parts: str) -> str:
    """A ClientToken that is the same for the same request, so a retry makes nothing twice."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]


def _tags(pairs: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def _tag_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def _nat_routes(vpc: Vpc) -> dict[str, str]:
    """Route table id -> NAT gateway id, for each table sending 0.0.0.0/0 through a NAT."""
    routes = {}
    for table in vpc.route_tables:
        default = table.default_route()
        if default and default.target_type == "nat":
            routes[table.id] = default.target_id
    return routes


def _private_subnets(vpc: Vpc) -> dict[str, str]:
    """Subnet id -> NAT gateway id, for each subnet whose egress is a NAT gateway."""
    routes = _nat_routes(vpc)
    return {s.id: routes[s.route_table_id] for s in vpc.subnets if s.route_table_id in routes}


def _public_subnet_by_az(vpc: Vpc, preferred: set[str]) -> dict[str, str]:
    """One public subnet per AZ, preferring the ALB's own subnets (the ones already serving)."""
    chosen: dict[str, str] = {}
    for subnet in sorted(
        (s for s in vpc.subnets if s.public), key=lambda s: (s.id not in preferred, s.cidr)
    ):
        chosen.setdefault(subnet.availability_zone, subnet.id)
    return chosen


def _s3_service(region: str) -> str:
    return f"com.amazonaws.{region}.s3"


class NetworkSurvey:
    """Reads, for one environment, what sits behind its NAT gateways. Read-only.

    Both steps need the same picture: which subnets route through which NAT, which workloads
    live there, and whether each can be moved to a public subnet safely.
    """

    def __init__(self, step: Step) -> None:
        self.ctx = step.ctx
        self.clients = step.clients
        self.env = step.ctx.config.name
        self.region = step.ctx.config.aws.region
        self.inventory: Inventory | None = None

    def instances(self, subnet_ids: list[str], env_asgs: set[str]) -> list[dict[str, Any]]:
        """EC2 instances in `subnet_ids`, each with the Auto Scaling group it belongs to."""
        if not subnet_ids:
            return []
        ec2 = self.clients.ec2
        found = [
            instance
            for page in ec2.get_paginator("describe_instances").paginate(
                Filters=[
                    {"Name": "subnet-id", "Values": sorted(subnet_ids)},
                    {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES},
                ]
            )
            for reservation in page["Reservations"]
            for instance in reservation["Instances"]
        ]
        ids = [i["InstanceId"] for i in found]
        groups: dict[str, str] = {}
        for start in range(0, len(ids), 50):
            described = self.clients.autoscaling.describe_auto_scaling_instances(
                InstanceIds=ids[start : start + 50]
            )["AutoScalingInstances"]
            groups.update({a["InstanceId"]: a["AutoScalingGroupName"] for a in described})
        return [
            {
                "kind": "ec2-instance",
                "id": i["InstanceId"],
                "name": _tag_dict(i.get("Tags")).get("Name"),
                "subnet_id": i["SubnetId"],
                "state": i["State"]["Name"],
                "autoscaling_group": groups.get(i["InstanceId"]),
                "managed_by_environment_asg": groups.get(i["InstanceId"]) in env_asgs,
            }
            for i in sorted(found, key=lambda i: i["InstanceId"])
        ]

    def lambda_interfaces(self, subnet_ids: list[str]) -> list[dict[str, Any]]:
        """Lambda functions attached to `subnet_ids`, seen through their network interfaces."""
        if not subnet_ids:
            return []
        interfaces = self.clients.ec2.describe_network_interfaces(
            Filters=[{"Name": "subnet-id", "Values": sorted(subnet_ids)}]
        )["NetworkInterfaces"]
        return [
            {
                "kind": "lambda",
                "id": eni["NetworkInterfaceId"],
                "name": eni.get("Description", ""),
                "subnet_id": eni["SubnetId"],
            }
            for eni in interfaces
            if eni.get("InterfaceType") == "lambda"
        ]

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

    def picture(self, inventory: Inventory) -> dict[str, Any]:
        """Per VPC: NAT routes, private subnets and the workloads in them; moves and blockers."""
        self.inventory = inventory
        env_asgs = {g.name for g in inventory.autoscaling_groups}
        vpcs = []
        moves, blockers = [], []
        for vpc in inventory.vpcs:
            private = _private_subnets(vpc)
            services = [s for s in inventory.services if set(s.subnets) & private.keys()]
            instances = self.instances(sorted(private), env_asgs)
            lambdas = self.lambda_interfaces(sorted(private))
            workloads: list[dict[str, Any]] = []
            for service in services:
                move, why = self.service_move(service, vpc, private)
                if move:
                    moves.append(move)
                else:
                    blockers.append(why)
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
            for instance in instances:
                asg = instance["autoscaling_group"]
                if asg:
                    whose = "this environment's " if instance["managed_by_environment_asg"] else ""
                    why = (
                        f"instance {instance['id']} of {whose}Auto Scaling group {asg} in private "
                        f"subnet {instance['subnet_id']} would lose egress and nat.remove does not "
                        "move Auto Scaling groups: move the group to public subnets first"
                    )
                else:
                    why = (
                        f"instance {instance['id']} in private subnet {instance['subnet_id']} "
                        "would lose egress and phasegate does not manage it"
                    )
                blockers.append(why)
                workloads.append(
                    {
                        **instance,
                        "subnet_ids": [instance["subnet_id"]],
                        "movable": False,
                        "note": why,
                    }
                )
            for eni in lambdas:
                why = (
                    f"Lambda interface {eni['id']} ({eni['name']}) in private subnet "
                    f"{eni['subnet_id']} would lose egress and phasegate does not move functions"
                )
                blockers.append(why)
                workloads.append(
                    {**eni, "subnet_ids": [eni["subnet_id"]], "movable": False, "note": why}
                )
            vpcs.append(
                {
                    "vpc": vpc,
                    "nat_routes": _nat_routes(vpc),
                    "private_subnets": private,
                    "workloads": workloads,
                }
            )
        return {"vpcs": vpcs, "moves": moves, "blockers": blockers}


# --------------------------------------------------------------------------- nat.assess


class NatAssessmentObservation(Observation):
    assessment: dict[str, Any]


def _format_bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "unknown (no data)"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:,.1f} {unit}" if unit != "B" else f"{int(size):,} B"
        size /= 1024
    return f"{value} B"  # pragma: no cover


def render_markdown(assessment: dict[str, Any]) -> str:
    """The assessment as the markdown an operator reads in the Prefect UI."""
    env = assessment["environment"]
    lines = [
        f"# NAT gateway assessment: {env}",
        "",
        f"Region {assessment['region']}, generated {assessment['generated_at']}. "
        f"Traffic is AWS/NATGateway BytesOutToDestination, Sum over the last "
        f"{assessment['traffic_days']} days; no data is shown as unknown, never as 0.",
        "",
        f"NAT gateways cost about ${assessment['monthly_nat_cost']:,.2f} a month here.",
        "",
        "| NAT gateway | subnet (AZ) | traffic | route tables | private subnets | workloads |",
        "|---|---|---|---|---|---|",
    ]
    for nat in assessment["nat_gateways"]:
        workloads = ", ".join(f"{w['kind']} {w['id']}" for w in nat["workloads"]) or "none"
        lines.append(
            f"| {nat['id']} | {nat['subnet_id']} ({nat['availability_zone']}) "
            f"| {_format_bytes(nat['bytes_out_to_destination'])} "
            f"| {', '.join(t['id'] for t in nat['route_tables']) or 'none'} "
            f"| {', '.join(nat['private_subnets']) or 'none'} | {workloads} |"
        )
    if not assessment["nat_gateways"]:
        lines.append("| none | | | | | |")
    lines += ["", "## Workloads that lose egress without a NAT", ""]
    for w in assessment["workloads"]:
        verdict = "movable" if w["movable"] else "BLOCKS nat.remove"
        lines.append(f"- {w['kind']} `{w['id']}` ({verdict}): {w['note']}")
    if not assessment["workloads"]:
        lines.append("- none")
    lines += [
        "",
        "## VPC endpoints needed without a NAT",
        "",
        "| VPC | endpoint | type | needed | present |",
        "|---|---|---|---|---|",
    ]
    for e in assessment["vpc_endpoints"]:
        lines.append(
            f"| {e['vpc_id']} | {e['service']} | {e['type']} | {e['needed']} "
            f"| {'yes' if e['present'] else 'no'} |"
        )
    lines += ["", *(f"> {note}" for note in assessment["notes"])]
    return "\n".join(lines) + "\n"


class NatAssessment(Step):
    """Read-only: what the NAT gateways carry, who depends on them, and what replaces them.

    Removing a NAT gateway is cheap to do and expensive to get wrong, so before anything
    moves the operator sees, per gateway, its traffic (no data is "unknown", not 0: a gateway
    with no metrics may still carry traffic), the route tables and subnets sending 0.0.0.0/0
    through it, the workloads in those subnets, and which VPC endpoints they will need.
    """

    id = "nat.assess"
    phase = 1
    title = "Assess NAT gateways: traffic, routes, workloads, endpoints"
    iam_actions = (*DISCOVERY_IAM_ACTIONS, *SURVEY_IAM_ACTIONS, "cloudwatch:GetMetricData")

    render_markdown = staticmethod(render_markdown)

    def observe(self) -> NatAssessmentObservation:
        return NatAssessmentObservation(assessment=self.assess())

    def assess(self) -> dict[str, Any]:
        inventory = self.ctx.inventory()
        survey = NetworkSurvey(self).picture(inventory)
        traffic = self.traffic([n.id for n in inventory.nat_gateways])
        az_of = {s.id: s.availability_zone for s in inventory.subnets}
        region = self.ctx.config.aws.region
        nats, endpoints, workloads = [], [], []
        for part in survey["vpcs"]:
            vpc: Vpc = part["vpc"]
            tables = {t.id: t for t in vpc.route_tables}
            for nat in vpc.nat_gateways:
                behind = sorted(s for s, n in part["private_subnets"].items() if n == nat.id)
                nats.append(
                    {
                        "id": nat.id,
                        "vpc_id": vpc.id,
                        "state": nat.state,
                        "subnet_id": nat.subnet_id,
                        "availability_zone": az_of.get(nat.subnet_id, ""),
                        "public_ips": nat.public_ips,
                        "allocation_ids": nat.allocation_ids,
                        "bytes_out_to_destination": traffic.get(nat.id, UNKNOWN),
                        "route_tables": [
                            {"id": t, "subnet_ids": sorted(tables[t].subnet_ids)}
                            for t, n in sorted(part["nat_routes"].items())
                            if n == nat.id
                        ],
                        "private_subnets": behind,
                        "workloads": [
                            {"kind": w["kind"], "id": w["id"], "name": w.get("name")}
                            for w in part["workloads"]
                            if set(w["subnet_ids"]) & set(behind)
                        ],
                    }
                )
            workloads += part["workloads"]
            present = set(vpc.vpc_endpoints)
            endpoints.append(
                {
                    "vpc_id": vpc.id,
                    "service": _s3_service(region),
                    "type": "Gateway",
                    "needed": "yes (free; keeps S3 traffic off the internet)",
                    "present": _s3_service(region) in present,
                }
            )
            endpoints += [
                {
                    "vpc_id": vpc.id,
                    "service": f"com.amazonaws.{region}.{name}",
                    "type": "Interface",
                    "needed": "only if tasks stay in private subnets",
                    "present": f"com.amazonaws.{region}.{name}" in present,
                }
                for name in ("ecr.api", "ecr.dkr", "logs")
            ]
        return {
            "environment": self.ctx.config.name,
            "region": region,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "traffic_days": TRAFFIC_DAYS,
            "monthly_nat_cost": round(self._nat_cost(inventory), 2),
            "nat_gateways": nats,
            "workloads": workloads,
            "blockers": survey["blockers"],
            "vpc_endpoints": endpoints,
            "notes": [
                "nat.remove moves ECS tasks to the public subnets with public IPs, so they "
                "pull images and ship logs over the internet gateway: only the S3 gateway "
                "endpoint is added. ECR api/dkr and CloudWatch Logs interface endpoints "
                "(about $7 a month each per AZ) are needed only if tasks stay private.",
                "Data stores (RDS, ElastiCache) stay in the private subnets; they need no egress.",
            ],
        }

    def _nat_cost(self, inventory: Inventory) -> float:
        prices = self.ctx.prices or load_price_table(self.ctx.config.aws.region)
        return price_inventory(inventory, self.ctx.config, prices).row("NAT Gateway")

    def traffic(self, nat_ids: list[str]) -> dict[str, int | str]:
        """BytesOutToDestination summed over the last TRAFFIC_DAYS days; "unknown" if no data."""
        if not nat_ids:
            return {}
        namespace, metric, dimension = TRAFFIC_METRIC
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        queries = [
            {
                "Id": f"m{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": metric,
                        "Dimensions": [{"Name": dimension, "Value": nat_id}],
                    },
                    "Period": 3600,
                    "Stat": "Sum",
                },
                "ReturnData": True,
            }
            for i, nat_id in enumerate(nat_ids)
        ]
        values: dict[str, list[float]] = {q["Id"]: [] for q in queries}
        params: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": end - timedelta(days=TRAFFIC_DAYS),
            "EndTime": end,
        }
        while True:
            page = self.clients.cloudwatch.get_metric_data(**params)
            for result in page["MetricDataResults"]:
                values[result["Id"]] += result.get("Values", [])
            if not page.get("NextToken"):
                break
            params["NextToken"] = page["NextToken"]
        return {
            nat_id: round(sum(values[f"m{i}"])) if values[f"m{i}"] else UNKNOWN
            for i, nat_id in enumerate(nat_ids)
        }

    def plan(self, obs: Observation) -> Change:
        """Always a Change (read-only, so re-running is harmless): it carries the report."""
        assessment = obs.assessment  # type: ignore[attr-defined]
        unknown = sum(
            1 for n in assessment["nat_gateways"] if n["bytes_out_to_destination"] == UNKNOWN
        )
        return self.change(
            f"assessment of {len(assessment['nat_gateways'])} NAT gateways "
            f"({unknown} without traffic data), {len(assessment['workloads'])} workloads behind "
            f"them, {len(assessment['blockers'])} blockers",
            [],
            0.0,
            reversibility=Reversibility(
                restart_needed=False, rollback_possible=True, expected_disruption="none"
            ),
            before=assessment,
            desired=assessment,
        )

    def apply(self, change: Change) -> dict[str, Any]:
        """Publish the report as a Prefect artifact when inside a run; change nothing in AWS."""
        assessment = change.desired
        artifact = self.publish(assessment)
        if self.log:
            self.log.info("nat.assessment", resource=assessment["environment"], artifact=artifact)
        return assessment

    def publish(self, assessment: dict[str, Any]) -> str | None:
        """The markdown artifact's id, or None outside a Prefect flow or task run."""
        from prefect.context import get_run_context
        from prefect.exceptions import MissingContextError

        try:
            get_run_context()
        except MissingContextError:
            return None
        from prefect.artifacts import create_markdown_artifact

        key = re.sub(r"[^a-z0-9-]+", "-", f"nat-assessment-{assessment['environment']}".lower())
        return str(
            create_markdown_artifact(
                markdown=render_markdown(assessment),
                key=key,
                description=f"NAT gateways of {assessment['environment']} and what depends on them",
            )
        )

    def verify(self, record: Record) -> None:
        """Nothing to prove: the step changed nothing."""

    def rollback(self, record: Record) -> None:
        """Nothing to undo: the step changed nothing."""


# --------------------------------------------------------------------------- nat.remove


class NatRemovalObservation(Observation):
    """What nat.remove starts from.

    `s3_endpoints` and `app_security_groups` hold, per VPC, the endpoint or group that
    existed before and was not made by phasegate (None otherwise): rollback keeps those and
    deletes what phasegate made.
    """

    inventory: Inventory
    nat_gateways: list[dict[str, Any]]
    nat_routes: list[dict[str, Any]]
    moves: list[dict[str, Any]]
    blockers: list[str]
    route_tables: dict[str, list[str]]
    s3_endpoints: dict[str, dict[str, Any] | None]
    app_security_groups: dict[str, str | None]


class NatRemoval(Step):
    """Remove the NAT gateways without cutting any workload's egress.

    The order is what keeps the service up: the ECS tasks move first (a rolling replacement
    into the public subnets with public IPs, behind a security group admitting only the ALB),
    then the S3 gateway endpoint is added, then the 0.0.0.0/0 routes via NAT are dropped, then
    the gateways are deleted, and only once they are gone are their Elastic IPs released (AWS
    refuses to release an address a gateway still holds). Anything in a private subnet that
    phasegate cannot move (an EC2 instance, an Auto Scaling group, a Lambda function) makes
    the step refuse before it changes anything.
    """

    id = "nat.remove"
    phase = 1
    title = "Remove NAT gateways: tasks to public subnets, S3 endpoint, routes, NATs, EIPs"
    after = ("nat.assess",)  # its report is what the operator reads before removal
    iam_actions = (
        *DISCOVERY_IAM_ACTIONS,
        *SURVEY_IAM_ACTIONS,
        "ec2:DescribeAddresses",
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:DeleteSecurityGroup",
        "ec2:CreateTags",
        "ecs:UpdateService",
        "ec2:CreateVpcEndpoint",
        "ec2:ModifyVpcEndpoint",
        "ec2:DeleteVpcEndpoints",
        "ec2:DeleteRoute",
        "ec2:CreateRoute",
        "ec2:ReplaceRoute",
        "ec2:DeleteNatGateway",
        "ec2:CreateNatGateway",
        "ec2:ReleaseAddress",
        "ec2:AllocateAddress",
    )

    # ------------------------------------------------------------------ helpers

    def _info(self, event: str, resource: str, **kw: Any) -> None:
        if self.log:
            self.log.info(event, resource=resource, **kw)

    def _warn(self, event: str, resource: str, **kw: Any) -> None:
        if self.log:
            self.log.warning(event, resource=resource, **kw)

    def _ours(self, resource: dict[str, Any]) -> bool:
        """Made by this step (a run that stopped before its Record was kept, say)."""
        return _tag_dict(resource.get("Tags")).get(CREATED_BY_TAG) == self.id

    @property
    def _env(self) -> str:
        return self.ctx.config.name

    def _our_tags(self, name: str, extra: dict[str, str] | None = None) -> list[dict[str, str]]:
        tags = {**self.ctx.config.discovery.tags, "Name": name, CREATED_BY_TAG: self.id}
        return _tags({**tags, **(extra or {})})

    def _nats(self, **filters: list[str]) -> list[dict[str, Any]]:
        ec2 = self.clients.ec2
        return [
            nat
            for page in ec2.get_paginator("describe_nat_gateways").paginate(
                Filter=[{"Name": k.replace("_", "-"), "Values": v} for k, v in filters.items()]
            )
            for nat in page["NatGateways"]
        ]

    def _default_route(self, route_table_id: str) -> dict[str, Any] | None:
        table = self.clients.ec2.describe_route_tables(RouteTableIds=[route_table_id])[
            "RouteTables"
        ][0]
        return next((r for r in table["Routes"] if r.get("DestinationCidrBlock") == ANYWHERE), None)

    def _s3_endpoint(self, vpc_id: str) -> dict[str, Any] | None:
        service = _s3_service(self.ctx.config.aws.region)
        endpoints = self.clients.ec2.describe_vpc_endpoints(
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

    def _service(self, cluster: str, name: str) -> dict[str, Any]:
        return self.clients.ecs.describe_services(cluster=cluster, services=[name])["services"][0]

    @staticmethod
    def _network(svc: dict[str, Any]) -> tuple[list[str], list[str], bool]:
        net = svc.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
        return (
            sorted(net.get("subnets", [])),
            sorted(net.get("securityGroups", [])),
            net.get("assignPublicIp") == "ENABLED",
        )

    # ------------------------------------------------------------------ observe / plan

    def observe(self) -> NatRemovalObservation:
        inventory = self.ctx.inventory()
        survey = NetworkSurvey(self)
        picture = survey.picture(inventory)
        nat_ids = [n.id for n in inventory.nat_gateways]
        described = (
            {n["NatGatewayId"]: n for n in self._nats(nat_gateway_id=nat_ids)} if nat_ids else {}
        )
        nats = []
        for nat in inventory.nat_gateways:
            raw = described.get(nat.id, {})
            addresses = raw.get("NatGatewayAddresses", [])
            nats.append(
                {
                    "id": nat.id,
                    "vpc_id": raw.get("VpcId"),
                    "subnet_id": nat.subnet_id,
                    "connectivity_type": raw.get("ConnectivityType", "public"),
                    "allocation_ids": nat.allocation_ids,
                    "public_ips": nat.public_ips,
                    "network_interface_ids": [
                        a["NetworkInterfaceId"] for a in addresses if a.get("NetworkInterfaceId")
                    ],
                    "tags": _tag_dict(raw.get("Tags")),
                }
            )
        allocations = [a for n in nats for a in n["allocation_ids"]]
        eip_tags = {}
        if allocations:
            addresses = self.clients.ec2.describe_addresses(
                Filters=[{"Name": "allocation-id", "Values": allocations}]
            )["Addresses"]
            eip_tags = {a["AllocationId"]: _tag_dict(a.get("Tags")) for a in addresses}
        for nat in nats:
            nat["eip_tags"] = {a: eip_tags.get(a, {}) for a in nat["allocation_ids"]}
        routes = [
            {
                "vpc_id": part["vpc"].id,
                "route_table_id": table,
                "destination": ANYWHERE,
                "nat_gateway_id": nat_id,
            }
            for part in picture["vpcs"]
            for table, nat_id in sorted(part["nat_routes"].items())
        ]
        vpcs = [v.id for v in inventory.vpcs]
        s3 = {}
        for vpc_id in vpcs:
            endpoint = self._s3_endpoint(vpc_id)
            s3[vpc_id] = (
                {"id": endpoint["VpcEndpointId"], "route_table_ids": endpoint["RouteTableIds"]}
                if endpoint and not self._ours(endpoint)
                else None
            )
        app_sgs = {}
        for vpc_id in sorted({m["vpc_id"] for m in picture["moves"]}):
            group = survey.app_security_group(vpc_id)
            app_sgs[vpc_id] = group["GroupId"] if group and not self._ours(group) else None
        return NatRemovalObservation(
            inventory=inventory,
            nat_gateways=nats,
            nat_routes=routes,
            moves=picture["moves"],
            blockers=picture["blockers"],
            route_tables={v.id: sorted(t.id for t in v.route_tables) for v in inventory.vpcs},
            s3_endpoints=s3,
            app_security_groups=app_sgs,
        )

    def plan(self, obs: Observation) -> Change | None:
        assert isinstance(obs, NatRemovalObservation)
        if not obs.nat_gateways and not obs.nat_routes:
            return None
        if obs.blockers:
            raise StepRefused(
                f"{self._env}: {self.id} refused, nothing changed: " + "; ".join(obs.blockers)
            )
        moved = {(m["cluster"], m["name"]): m for m in obs.moves}
        before_services = [
            {
                "cluster": s.cluster,
                "name": s.name,
                "arn": s.arn,
                "subnets": s.subnets,
                "security_groups": s.security_groups,
                "assign_public_ip": s.assign_public_ip,
            }
            for s in obs.inventory.services
            if (s.cluster, s.name) in moved
        ]
        after_inventory = obs.inventory.model_copy(deep=True)
        for vpc in after_inventory.vpcs:
            vpc.nat_gateways = []
        for service in after_inventory.services:
            move = moved.get((service.cluster, service.name))
            if move:
                service.subnets = move["subnets"]
                service.assign_public_ip = True
        delta = self.ctx.cost_delta(obs.inventory, after_inventory)
        app_sg = f"{self._env}-app-public"
        s3 = _s3_service(self.ctx.config.aws.region)
        actions = [
            f"ecs: move {m['cluster']}/{m['name']} to {', '.join(m['subnets'])} with "
            "assignPublicIp ENABLED, security groups "
            f"{', '.join(m['security_groups']) if m['security_groups'] else app_sg + ' (ALB only)'}"
            ", rolling replacement"
            for m in obs.moves
        ]
        actions += [
            f"ec2: create S3 gateway endpoint {s3} in {vpc_id} "
            f"on {', '.join(obs.route_tables[vpc_id])}"
            for vpc_id, endpoint in obs.s3_endpoints.items()
            if endpoint is None
        ]
        actions += [
            f"ec2: delete route {r['destination']} -> {r['nat_gateway_id']} "
            f"from {r['route_table_id']}"
            for r in obs.nat_routes
        ]
        actions += [f"ec2: delete NAT gateway {n['id']}" for n in obs.nat_gateways]
        actions += [
            f"ec2: release Elastic IP {a}" for n in obs.nat_gateways for a in n["allocation_ids"]
        ]
        return self.change(
            f"remove {len(obs.nat_gateways)} NAT gateways after moving {len(obs.moves)} ECS "
            "services to public subnets",
            actions,
            delta,
            reversibility=Reversibility(
                restart_needed=True,
                rollback_possible=True,
                expected_disruption="rolling replacement of tasks; no downtime behind the ALB",
            ),
            before={
                "vpcs": sorted(obs.route_tables),
                "nat_gateways": obs.nat_gateways,
                "nat_routes": obs.nat_routes,
                "services": before_services,
                "s3_endpoints": obs.s3_endpoints,
                "app_security_groups": obs.app_security_groups,
                "note": "released Elastic IPs cannot be recovered: rollback allocates new ones",
            },
            desired={
                "services": obs.moves,
                "s3_endpoint_service": s3,
                "app_security_group_name": app_sg,
            },
        )

    # ------------------------------------------------------------------ apply

    def apply(self, change: Change) -> dict[str, Any]:
        """(a) services (b) S3 endpoint (c) routes (d) NAT gateways (e) Elastic IPs."""
        before, desired = change.before, change.desired
        app_sgs: dict[str, str] = {}
        services = []
        for move in desired["services"]:
            groups = move["security_groups"]
            if not groups:
                vpc_id = move["vpc_id"]
                app_sgs[vpc_id] = self._ensure_app_sg(
                    vpc_id,
                    move["alb_security_groups"],
                    move["container_ports"],
                    app_sgs.get(vpc_id),
                )
                groups = [app_sgs[vpc_id]]
            self.progress(app_security_groups=app_sgs)
            self._set_network(move["cluster"], move["name"], move["subnets"], groups, True)
            services.append({**move, "security_groups": sorted(groups)})
        s3 = {}
        for vpc_id in before["vpcs"]:
            s3[vpc_id] = self._ensure_s3_endpoint(vpc_id)
            self.progress(s3_endpoints=s3)
        deleted_routes = self._delete_nat_routes(before)
        nat_ids = [n["id"] for n in before["nat_gateways"]]
        self._delete_nats(nat_ids)
        released, kept = self._release_addresses(before["nat_gateways"])
        return {
            "services": services,
            "s3_endpoints": s3,
            "app_security_groups": app_sgs,
            "deleted_routes": deleted_routes,
            "deleted_nat_gateways": nat_ids,
            "released_allocation_ids": released,
            "kept_allocation_ids": kept,
        }

    def _ensure_app_sg(
        self, vpc_id: str, sources: list[str], ports: list[int], known: str | None
    ) -> str:
        """`{env}-app-public`: admits the ALB's groups on the container ports, nothing else."""
        ec2 = self.clients.ec2
        name = f"{self._env}-app-public"
        existing = None if known else NetworkSurvey(self).app_security_group(vpc_id)
        group_id = known or (existing["GroupId"] if existing else None)
        if group_id is None:
            group_id = ec2.create_security_group(
                GroupName=name,
                Description=f"{self._env} app tasks in public subnets: container port from the ALB",
                VpcId=vpc_id,
                TagSpecifications=[
                    {"ResourceType": "security-group", "Tags": self._our_tags(name)}
                ],
            )["GroupId"]
            self._info("nat.security_group_created", group_id, vpc=vpc_id, name=name)
        group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
        have = {
            (perm.get("FromPort"), perm.get("ToPort"), pair.get("GroupId"))
            for perm in group.get("IpPermissions", [])
            if perm.get("IpProtocol") == "tcp"
            for pair in perm.get("UserIdGroupPairs", [])
        }
        missing = [
            (port, source)
            for port in ports
            for source in sources
            if (port, port, source) not in have
        ]
        if missing:
            ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": port,
                        "ToPort": port,
                        "UserIdGroupPairs": [{"GroupId": source, "Description": "from the ALB"}],
                    }
                    for port, source in missing
                ],
            )
            self._info("nat.security_group_ingress", group_id, admitted=missing)
        return group_id

    def _set_network(
        self, cluster: str, name: str, subnets: list[str], groups: list[str], public: bool
    ) -> None:
        """Point the service at `subnets`/`groups` (rolling replacement), then wait stable."""
        resource = f"{cluster}/{name}"
        svc = self._service(cluster, name)
        if self._network(svc) != (sorted(subnets), sorted(groups), public):
            self.clients.ecs.update_service(
                cluster=cluster,
                service=name,
                networkConfiguration={
                    "awsvpcConfiguration": {
                        "subnets": sorted(subnets),
                        "securityGroups": sorted(groups),
                        "assignPublicIp": "ENABLED" if public else "DISABLED",
                    }
                },
                forceNewDeployment=True,
            )
            self._info(
                "nat.service_moved", resource, subnets=subnets, security_groups=groups,
                assign_public_ip=public,
            )  # fmt: skip
        self._wait_stable(cluster, name)

    def _wait_stable(self, cluster: str, name: str) -> None:
        """ECS's own definition of stable: one deployment, running == desired."""

        def stable(svc: dict[str, Any]) -> bool:
            failed = [d for d in svc.get("deployments", []) if d.get("rolloutState") == "FAILED"]
            if failed:
                raise PhasegateError(
                    f"{self._env}: ECS service {cluster}/{name}: deployment {failed[0]['id']} "
                    f"failed: {failed[0].get('rolloutStateReason', '')}"
                )
            return (
                len(svc.get("deployments", [])) <= 1 and svc["runningCount"] == svc["desiredCount"]
            )

        self.ctx.wait(
            f"ECS service {cluster}/{name} stable (running == desired)",
            lambda: self._service(cluster, name),
            stable,
            kind="ecs_deploy",
        )

    def _ensure_s3_endpoint(self, vpc_id: str) -> str:
        """The VPC's S3 gateway endpoint on all its route tables, made if missing."""
        ec2 = self.clients.ec2
        tables = sorted(
            t["RouteTableId"]
            for t in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])[
                "RouteTables"
            ]
        )
        endpoint = self._s3_endpoint(vpc_id)
        if endpoint:
            missing = sorted(set(tables) - set(endpoint.get("RouteTableIds", [])))
            if missing:
                ec2.modify_vpc_endpoint(
                    VpcEndpointId=endpoint["VpcEndpointId"], AddRouteTableIds=missing
                )
                self._info("nat.s3_endpoint_extended", endpoint["VpcEndpointId"], added=missing)
            return endpoint["VpcEndpointId"]
        service = _s3_service(self.ctx.config.aws.region)
        endpoint_id = ec2.create_vpc_endpoint(
            VpcEndpointType="Gateway",
            VpcId=vpc_id,
            ServiceName=service,
            RouteTableIds=tables,
            ClientToken=_token(self._env, self.id, vpc_id, service),
            TagSpecifications=[
                {"ResourceType": "vpc-endpoint", "Tags": self._our_tags(f"{self._env}-s3")}
            ],
        )["VpcEndpoint"]["VpcEndpointId"]
        self._info("nat.s3_endpoint_created", endpoint_id, vpc=vpc_id, route_tables=tables)
        return endpoint_id

    def _delete_nat_routes(self, before: dict[str, Any]) -> list[dict[str, Any]]:
        nat_ids = {n["id"] for n in before["nat_gateways"]} | {
            r["nat_gateway_id"] for r in before["nat_routes"]
        }
        deleted = []
        for route in before["nat_routes"]:
            table = route["route_table_id"]
            current = self._default_route(table)
            if current is None or current.get("NatGatewayId") not in nat_ids:
                continue  # already gone, or changed by hand to something that is not ours
            self.clients.ec2.delete_route(RouteTableId=table, DestinationCidrBlock=ANYWHERE)
            self._info("nat.route_deleted", table, target=current["NatGatewayId"])
            deleted.append(route)
        return deleted

    def _delete_nats(self, nat_ids: list[str]) -> None:
        if not nat_ids:
            return
        for nat in self._nats(nat_gateway_id=nat_ids):
            if nat["State"] in LIVE_NAT_STATES:
                self.clients.ec2.delete_nat_gateway(NatGatewayId=nat["NatGatewayId"])
                self._info("nat.gateway_deleting", nat["NatGatewayId"])
        self.ctx.wait(
            f"NAT gateways {', '.join(nat_ids)} deleted",
            lambda: self._nats(nat_gateway_id=nat_ids),
            lambda nats: all(n["State"] in GONE_NAT_STATES for n in nats),
            kind="nat_delete",
        )
        self._info("nat.gateways_deleted", ", ".join(nat_ids))

    def _release_addresses(self, nats: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
        """Release each gateway's EIP, only once no live gateway holds it (AWS would refuse)."""
        ec2 = self.clients.ec2
        allocations = [a for n in nats for a in n["allocation_ids"]]
        if not allocations:
            return [], {}
        ours = {eni for n in nats for eni in n["network_interface_ids"]}
        holders = {
            a["AllocationId"]: nat["NatGatewayId"]
            for nat in self._nats(state=["pending", "available", "deleting"])
            for a in nat.get("NatGatewayAddresses", [])
        }
        released, kept = [], {}
        addresses = ec2.describe_addresses(
            Filters=[{"Name": "allocation-id", "Values": allocations}]
        )["Addresses"]
        for address in addresses:
            allocation = address["AllocationId"]
            if allocation in holders:
                raise PhasegateError(
                    f"{self._env}: Elastic IP {allocation} is still held by NAT gateway "
                    f"{holders[allocation]}; AWS refuses to release it"
                )
            eni = address.get("NetworkInterfaceId")
            if address.get("AssociationId") and eni and eni not in ours:
                kept[allocation] = f"associated with {eni}, which is not a removed NAT gateway"
                self._warn("nat.address_kept", allocation, reason=kept[allocation])
                continue
            ec2.release_address(AllocationId=allocation)
            self._info("nat.address_released", allocation, public_ip=address.get("PublicIp"))
            released.append(allocation)
        # Not found: released by an earlier attempt of this apply.
        released += [a for a in allocations if a not in released and a not in kept]
        return sorted(released), kept

    # ------------------------------------------------------------------ verify

    def verify(self, record: Record) -> None:
        """From AWS: no NAT left or routed to; if applied, endpoint, services and EIPs too.

        Settling while gateways are still deleting or a service's tasks are being replaced;
        drifted (with the diff) when a NAT gateway or a route to one is back, or a service
        left the public subnets.
        """
        inventory = self.ctx.inventory()
        diff: dict[str, Any] = {}
        busy: list[str] = []
        for vpc in inventory.vpcs:
            for nat in vpc.nat_gateways:
                if nat.state == "deleting":
                    busy.append(f"NAT gateway {nat.id} is deleting")
                else:
                    diff[f"nat_gateway.{nat.id}"] = diff_entry("absent", nat.state)
            for table in vpc.route_tables:
                route = table.default_route()
                if route and route.target_type == "nat":
                    diff[f"route.{table.id}.{ANYWHERE}"] = diff_entry("absent", route.target_id)
        if record.change is not None:
            for vpc_id in record.before.get("vpcs", []):
                if self._s3_endpoint(vpc_id) is None:
                    diff[f"s3_endpoint.{vpc_id}"] = diff_entry("present", "absent")
            released = record.after.get("released_allocation_ids", [])
            if released:
                left = self.clients.ec2.describe_addresses(
                    Filters=[{"Name": "allocation-id", "Values": released}]
                )["Addresses"]
                for address in left:
                    diff[f"elastic_ip.{address['AllocationId']}"] = diff_entry(
                        "released", "allocated"
                    )
            public = {s.id for s in inventory.subnets if s.public}
            found = {(s.cluster, s.name): s for s in inventory.services}
            for move in record.change.desired.get("services", []):
                label = f"{move['cluster']}/{move['name']}"
                svc = found.get((move["cluster"], move["name"]))
                if svc is None:
                    diff[f"service.{label}"] = diff_entry("present", "absent")
                    continue
                if not svc.subnets or not set(svc.subnets) <= public:
                    diff[f"service.{label}.subnets"] = diff_entry(
                        "public subnets", sorted(set(svc.subnets) - public)
                    )
                if not svc.assign_public_ip:
                    diff[f"service.{label}.assign_public_ip"] = diff_entry("ENABLED", "DISABLED")
                if svc.running != svc.desired:
                    busy.append(f"ECS service {label} runs {svc.running} of {svc.desired} tasks")
        if diff:
            raise VerificationFailed.of(f"{self._env}: {self.id}", diff)
        if busy:
            raise Settling(f"{self._env}: {self.id}: " + "; ".join(busy))

    # ------------------------------------------------------------------ rollback

    def rollback(self, record: Record) -> None:
        """NATs (new EIPs) in the same subnets, routes to them, services back, our extras gone."""
        if record.change is None:
            return
        before, after = record.before, record.after
        nats = before["nat_gateways"]
        self._wait_deleted([n["id"] for n in nats])  # a killed apply may have left some deleting
        new = {nat["id"]: self._restore_nat(nat) for nat in nats}
        if new:
            ids = sorted(new.values())
            waited = self.ctx.wait(
                f"NAT gateways {', '.join(ids)} available",
                lambda: self._nats(nat_gateway_id=ids),
                lambda found: (
                    len(found) == len(ids)
                    and all(n["State"] in ("available", "failed") for n in found)
                ),
                kind="nat_create",
            )
            failed = [n for n in waited if n["State"] == "failed"]
            if failed:
                raise PhasegateError(
                    f"{self._env}: NAT gateway {failed[0]['NatGatewayId']} failed: "
                    f"{failed[0].get('FailureMessage', 'no reason given')}"
                )
        for route in before["nat_routes"]:
            target = new.get(route["nat_gateway_id"])
            if target is None:
                self._warn(
                    "nat.route_not_restored", route["route_table_id"],
                    reason=f"{route['nat_gateway_id']} was not a live NAT gateway",
                )  # fmt: skip
                continue
            self._restore_route(route["route_table_id"], target)
        for svc in before["services"]:
            self._set_network(
                svc["cluster"], svc["name"], svc["subnets"], svc["security_groups"],
                svc["assign_public_ip"],
            )  # fmt: skip
        for vpc_id, prior in before["s3_endpoints"].items():
            self._restore_s3_endpoint(vpc_id, prior, after.get("s3_endpoints", {}).get(vpc_id))
        for vpc_id, prior in before.get("app_security_groups", {}).items():
            made = after.get("app_security_groups", {}).get(vpc_id)
            if prior is None and made:
                self._delete_security_group(made)

    def _restore_nat(self, nat: dict[str, Any]) -> str:
        """A NAT gateway in `nat`'s subnet: an existing live one, else a new one with a new EIP."""
        ec2 = self.clients.ec2
        live = self._nats(subnet_id=[nat["subnet_id"]], state=LIVE_NAT_STATES)
        live.sort(key=lambda n: _tag_dict(n.get("Tags")).get(REPLACES_TAG) != nat["id"])
        if live:
            return live[0]["NatGatewayId"]
        tags = {k: v for k, v in nat["tags"].items() if not k.startswith("aws:")}
        params: dict[str, Any] = {"SubnetId": nat["subnet_id"]}
        if nat["connectivity_type"] == "public" and nat["allocation_ids"]:
            old = nat["allocation_ids"][0]
            allocation = self._restore_address(nat["id"], nat["eip_tags"].get(old, {}), old)
            params["AllocationId"] = allocation
        else:
            params["ConnectivityType"] = nat["connectivity_type"]
            allocation = "private"
        nat_id = ec2.create_nat_gateway(
            **params,
            ClientToken=_token(self._env, self.id, nat["id"], allocation),
            TagSpecifications=[
                {"ResourceType": "natgateway", "Tags": _tags({**tags, REPLACES_TAG: nat["id"]})}
            ],
        )["NatGateway"]["NatGatewayId"]
        self._info("nat.gateway_created", nat_id, subnet=nat["subnet_id"], replaces=nat["id"])
        return nat_id

    def _wait_deleted(self, nat_ids: list[str]) -> None:
        """Until none of `nat_ids` is deleting: their Elastic IPs are free only then."""
        if not nat_ids:
            return
        self.ctx.wait(
            f"NAT gateways {', '.join(nat_ids)} done deleting",
            lambda: self._nats(nat_gateway_id=nat_ids),
            lambda nats: all(n["State"] != "deleting" for n in nats),
            kind="nat_delete",
        )

    def _restore_address(self, nat_id: str, tags: dict[str, str], original: str) -> str:
        """The EIP for the gateway that replaces `nat_id`: its own, if a half-applied removal
        never released it (same public IP), else one allocated for it earlier, else a new one."""
        ec2 = self.clients.ec2
        kept = ec2.describe_addresses(Filters=[{"Name": "allocation-id", "Values": [original]}])[
            "Addresses"
        ]
        if kept and not kept[0].get("AssociationId"):
            return original
        free = [
            a
            for a in ec2.describe_addresses(
                Filters=[{"Name": f"tag:{REPLACES_TAG}", "Values": [nat_id]}]
            )["Addresses"]
            if not a.get("AssociationId")
        ]
        if free:
            return free[0]["AllocationId"]
        tags = {k: v for k, v in tags.items() if not k.startswith("aws:")}
        allocation = ec2.allocate_address(
            Domain="vpc",
            TagSpecifications=[
                {"ResourceType": "elastic-ip", "Tags": _tags({**tags, REPLACES_TAG: nat_id})}
            ],
        )["AllocationId"]
        self._info("nat.address_allocated", allocation, replaces=nat_id)
        return allocation

    def _restore_route(self, table: str, nat_id: str) -> None:
        ec2 = self.clients.ec2
        current = self._default_route(table)
        if current and current.get("NatGatewayId") == nat_id:
            return
        if current:
            ec2.replace_route(
                RouteTableId=table, DestinationCidrBlock=ANYWHERE, NatGatewayId=nat_id
            )
        else:
            ec2.create_route(RouteTableId=table, DestinationCidrBlock=ANYWHERE, NatGatewayId=nat_id)
        self._info("nat.route_restored", table, target=nat_id)

    def _restore_s3_endpoint(
        self, vpc_id: str, prior: dict[str, Any] | None, made: str | None
    ) -> None:
        """Delete the endpoint if we made it; else take back the route tables we added."""
        ec2 = self.clients.ec2
        endpoint = self._s3_endpoint(vpc_id)
        if endpoint is None:
            return
        if prior is None:
            if endpoint["VpcEndpointId"] != made and not self._ours(endpoint):
                self._warn("nat.s3_endpoint_kept", endpoint["VpcEndpointId"], reason="not ours")
                return
            ec2.delete_vpc_endpoints(VpcEndpointIds=[endpoint["VpcEndpointId"]])
            self._info("nat.s3_endpoint_deleted", endpoint["VpcEndpointId"])
            return
        added = sorted(set(endpoint.get("RouteTableIds", [])) - set(prior["route_table_ids"]))
        if added:
            ec2.modify_vpc_endpoint(VpcEndpointId=prior["id"], RemoveRouteTableIds=added)
            self._info("nat.s3_endpoint_narrowed", prior["id"], removed=added)

    def _delete_security_group(self, group_id: str) -> None:
        """Delete a group we made, once the replaced tasks' interfaces have let go of it."""
        ec2 = self.clients.ec2
        if not ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [group_id]}])[
            "SecurityGroups"
        ]:
            return

        delete_security_group(self.ctx, group_id)
        self._info("nat.security_group_deleted", group_id)

    def verify_rollback(self, record: Record) -> None:
        """From AWS: NATs available in the original subnets, routed to, services back."""
        if record.change is None:
            return
        before = record.before
        gaps = []
        live = {}
        for nat in before["nat_gateways"]:
            found = self._nats(subnet_id=[nat["subnet_id"]], state=["available"])
            if found:
                live[nat["id"]] = found[0]["NatGatewayId"]
            else:
                gaps.append(f"no available NAT gateway in {nat['subnet_id']} (was {nat['id']})")
        for route in before["nat_routes"]:
            current = self._default_route(route["route_table_id"])
            want = live.get(route["nat_gateway_id"])
            if want and (current is None or current.get("NatGatewayId") != want):
                gaps.append(
                    f"route table {route['route_table_id']} does not send 0.0.0.0/0 to {want}"
                )
        for svc in before["services"]:
            current = self._network(self._service(svc["cluster"], svc["name"]))
            wanted = (
                sorted(svc["subnets"]),
                sorted(svc["security_groups"]),
                svc["assign_public_ip"],
            )
            if current != wanted:
                gaps.append(f"ECS service {svc['cluster']}/{svc['name']} network is {current}")
        if gaps:
            raise VerificationFailed(f"{self._env}: {self.id} rollback: " + "; ".join(gaps))
