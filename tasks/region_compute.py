"""`regions.expand.compute`: the primary's compute target, copied into the second region.

ECS Fargate (`targets.compute: ecs-fargate-arm64`): a cluster of the same name, each
service's current task definition registered again there (same images, CPU, memory and
architecture; the awslogs driver writing to a log group of the same name in the second
region) and each service made with the same desired count, in the public subnets with public
IPs (no NAT), the one behind the primary's ALB registered with the second region's target
group. Images stay in the primary's ECR registry: ECS pulls across regions with the same
execution role, so nothing is replicated or pushed twice.

EC2 (`ec2-asg-graviton`): the Auto Scaling group and its launch template
(tasks/region_compute_ec2.py).
"""

from typing import Any

from phasegate.errors import AwsCallError
from phasegate.inventory import SERVICE_IAM_ACTIONS, Discovery, EcsService
from phasegate.steps import Settling, StepRefused
from tasks.region_common import (
    ALB_STEP,
    NETWORK_STEP,
    PRICING_IAM_ACTIONS,
    RegionStep,
    pages,
    tag_dict,
    tag_list,
)
from tasks.region_compute_ec2 import EC2_IAM_ACTIONS, Ec2Copy

STEP_ID = "regions.expand.compute"
TASK_DEFINITION_FIELDS = (
    "containerDefinitions", "cpu", "memory", "networkMode", "requiresCompatibilities",
    "runtimePlatform", "executionRoleArn", "taskRoleArn", "volumes",
)  # fmt: skip


def _shape(task_def: dict[str, Any]) -> dict[str, Any]:
    return {
        "family": task_def["family"],
        "cpu": str(task_def.get("cpu")),
        "memory": str(task_def.get("memory")),
        "architecture": task_def.get("runtimePlatform", {}).get("cpuArchitecture", "X86_64"),
        "images": [c["image"] for c in task_def["containerDefinitions"]],
    }


class RegionCompute(RegionStep):
    """The same compute as the primary, behind the second region's ALB."""

    id = STEP_ID
    title = "Second region: the primary's compute (ECS service or Auto Scaling group) copied"
    after = (ALB_STEP,)
    iam_actions = (
        *PRICING_IAM_ACTIONS,
        *SERVICE_IAM_ACTIONS,
        *EC2_IAM_ACTIONS,
        "ecs:CreateCluster",
        "ecs:RegisterTaskDefinition",
        "ecs:DeregisterTaskDefinition",
        "ecs:CreateService",
        "ecs:UpdateService",
        "ecs:DeleteService",
        "ecs:DeleteCluster",
        "ecs:TagResource",
        "ecs:ListTaskDefinitions",
        "ecs:ListTagsForResource",
        "logs:DescribeLogGroups",
        "logs:ListTagsForResource",
        "logs:ListTagsLogGroup",
        "logs:CreateLogGroup",
        "logs:DeleteLogGroup",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeTags",
        "iam:PassRole",
    )

    def target(self) -> dict[str, Any]:
        """The target too: a new compute target is a new copy, not a drift of the old one."""
        return {**super().target(), "compute": self.ctx.config.targets.compute}

    @property
    def on_ec2(self) -> bool:
        return self.ctx.config.targets.compute == "ec2-asg-graviton"

    def _services(self) -> list[EcsService]:
        found = Discovery(self.ctx.config, self.clients).services()
        if not found:
            raise StepRefused(f"{self.where()}: no ECS service of the primary to copy")
        return found

    def _log_groups(self, task_def: dict[str, Any]) -> list[str]:
        return sorted(
            {
                c["logConfiguration"]["options"]["awslogs-group"]
                for c in task_def["containerDefinitions"]
                if c.get("logConfiguration", {}).get("logDriver") == "awslogs"
            }
        )

    def desired(self) -> dict[str, Any]:
        if self.on_ec2:
            return {"region": self.region, **Ec2Copy(self).desired()}
        services = self._services()
        primary_groups = {g.arn for g in self.primary_load_balancer().target_groups}
        defs = {
            s.name: self.clients.ecs.describe_task_definition(taskDefinition=s.task_definition)[
                "taskDefinition"
            ]
            for s in services
        }
        return {
            "region": self.region,
            "cluster": services[0].cluster,
            "log_groups": sorted({g for d in defs.values() for g in self._log_groups(d)}),
            "services": {
                s.name: {
                    "task_definition": _shape(defs[s.name]),
                    "desired": s.desired,
                    "behind_alb": bool(set(s.target_groups) & primary_groups),
                    "public_ip": True,
                }
                for s in services
            },
        }

    # -- reading -------------------------------------------------------------------------

    def _cluster(self, region: str) -> dict[str, Any] | None:
        ecs = self.client("ecs", region)
        arns = pages(ecs, "list_clusters", "clusterArns")
        described = [
            c
            for i in range(0, len(arns), 100)
            for c in ecs.describe_clusters(clusters=arns[i : i + 100], include=["TAGS"])["clusters"]
        ]
        for cluster in described:
            ours = self.tags().items() <= tag_dict(cluster.get("tags")).items()
            if ours and cluster.get("status") == "ACTIVE":
                return dict(cluster)
        return None

    def _our_log_groups(self, region: str) -> list[str]:
        logs = self.client("logs", region)
        found = []
        for group in pages(logs, "describe_log_groups", "logGroups"):
            tags = logs.list_tags_log_group(logGroupName=group["logGroupName"])["tags"]
            if self.tags().items() <= tags.items():
                found.append(group["logGroupName"])
        return sorted(found)

    def current(self, region: str) -> dict[str, Any]:
        if self.on_ec2:
            return {"region": region, **Ec2Copy(self).current(region)}
        found: dict[str, Any] = {"region": region}
        logs = self._our_log_groups(region)
        if logs:
            found["log_groups"] = logs
        cluster = self._cluster(region)
        if cluster is None:
            return found
        found["cluster"] = cluster["clusterName"]
        ecs = self.client("ecs", region)
        arns = pages(ecs, "list_services", "serviceArns", cluster=cluster["clusterArn"])
        if not arns:
            return found
        group = self.target_group(region)
        services = {}
        described = [
            svc
            for i in range(0, len(arns), 10)
            for svc in ecs.describe_services(
                cluster=cluster["clusterArn"], services=arns[i : i + 10]
            )["services"]
        ]
        for svc in described:
            if svc.get("status") != "ACTIVE":
                continue
            task_def = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])
            network = svc.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
            balancers = [lb["targetGroupArn"] for lb in svc.get("loadBalancers", [])]
            services[svc["serviceName"]] = {
                "task_definition": _shape(task_def["taskDefinition"]),
                "desired": svc["desiredCount"],
                "behind_alb": bool(group and group["TargetGroupArn"] in balancers),
                "public_ip": network.get("assignPublicIp") == "ENABLED",
            }
            if svc["runningCount"] < svc["desiredCount"]:
                raise Settling(
                    f"ECS service {svc['serviceName']} in {region} runs {svc['runningCount']} "
                    f"of {svc['desiredCount']} tasks"
                )
        found["services"] = services
        return found

    def terraform_part(self) -> dict[str, Any]:
        return {"enable_secondary_compute": True}

    # -- changing ------------------------------------------------------------------------

    def describe(self, desired: dict[str, Any]) -> tuple[str, list[str], float]:
        if self.on_ec2:
            return Ec2Copy(self).describe(desired)
        services = desired["services"]
        names = ", ".join(f"{n} x{s['desired']}" for n, s in services.items())
        cost, note = self.secondary_cost("compute")
        return (
            f"{desired['region']}: ECS cluster {desired['cluster']} running {names} "
            f"(task definitions copied, same images; {note})",
            [
                f"ecs:CreateCluster {desired['cluster']}",
                f"logs:CreateLogGroup {', '.join(desired['log_groups']) or '(none)'}",
                "ecs:RegisterTaskDefinition: each service's, its log region the second one",
                f"ecs:CreateService {names} in the public subnets with public IPs, the ALB's "
                "behind the second region's target group",
                "wait until every task runs",
            ],
            cost,
        )

    def make(self, desired: dict[str, Any]) -> dict[str, Any]:
        if self.on_ec2:
            return Ec2Copy(self).make(desired)
        region = str(desired["region"])
        ecs, logs = self.client("ecs"), self.client("logs")
        have = self._our_log_groups(region)
        for name in desired["log_groups"]:
            if name not in have:
                logs.create_log_group(logGroupName=name, tags=self.tags())
        cluster = self._cluster(region)
        if cluster is None:
            cluster = ecs.create_cluster(
                clusterName=desired["cluster"], tags=tag_list(self.tags(), "key", "value")
            )["cluster"]
            self.progress(cluster=desired["cluster"])
        existing = self.current(region).get("services", {})
        for service in self._services():
            if service.name not in desired["services"] or service.name in existing:
                continue
            self._make_service(service, desired["services"][service.name], cluster["clusterArn"])
        self.ctx.wait(
            f"ECS services in {region} running",
            lambda: self._settled(region),
            bool,
            kind="ecs_deploy",
        )
        return {"cluster": cluster["clusterArn"]}

    def _settled(self, region: str) -> bool:
        try:
            self.current(region)
        except Settling:
            return False
        return True

    def _make_service(self, service: EcsService, spec: dict[str, Any], cluster: str) -> None:
        ecs = self.client("ecs")
        source = self.clients.ecs.describe_task_definition(taskDefinition=service.task_definition)
        task_def = {
            k: v for k, v in source["taskDefinition"].items() if k in TASK_DEFINITION_FIELDS
        }
        for container in task_def["containerDefinitions"]:
            options = container.get("logConfiguration", {}).get("options", {})
            if "awslogs-region" in options:
                options["awslogs-region"] = self.region
        registered = ecs.register_task_definition(
            family=source["taskDefinition"]["family"],
            tags=tag_list(self.tags(), "key", "value"),
            **task_def,
        )["taskDefinition"]["taskDefinitionArn"]
        group = self.target_group()
        container = task_def["containerDefinitions"][0]
        ports = container.get("portMappings") or [{}]
        balancers = (
            [
                {
                    "targetGroupArn": group["TargetGroupArn"],
                    "containerName": container["name"],
                    "containerPort": ports[0].get("containerPort", group["Port"]),
                }
            ]
            if spec["behind_alb"] and group
            else []
        )
        app = self.security_group("app")
        ecs.create_service(
            cluster=cluster,
            serviceName=service.name,
            taskDefinition=registered,
            desiredCount=spec["desired"],
            launchType="FARGATE",
            loadBalancers=balancers,
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": self.ec2_ids("subnets", NETWORK_STEP),
                    "securityGroups": [app] if app else [],
                    "assignPublicIp": "ENABLED",
                }
            },
            tags=tag_list(self.tags(), "key", "value"),
        )
        self.progress(**{f"service_{service.name}": registered})

    # -- undoing -------------------------------------------------------------------------

    def teardown(self, region: str) -> None:
        """Both targets' resources, found by tags: the config may have changed target since."""
        Ec2Copy(self).teardown(region)
        ecs = self.client("ecs", region)
        cluster = self._cluster(region)
        if cluster is not None:
            arns = pages(ecs, "list_services", "serviceArns", cluster=cluster["clusterArn"])
            for arn in arns:
                ecs.delete_service(cluster=cluster["clusterArn"], service=arn, force=True)
            self.ctx.wait(
                f"ECS services of {cluster['clusterName']} in {region} deleted",
                lambda: self._active_services(region, cluster["clusterArn"]),
                lambda active: not active,
                kind="ecs_deploy",
            )
            for arn in pages(ecs, "list_task_definitions", "taskDefinitionArns"):
                tags = ecs.list_tags_for_resource(resourceArn=arn).get("tags")
                if self.tags().items() <= tag_dict(tags).items():
                    ecs.deregister_task_definition(taskDefinition=arn)
            ecs.delete_cluster(cluster=cluster["clusterArn"])
        logs = self.client("logs", region)
        for name in self._our_log_groups(region):
            try:
                logs.delete_log_group(logGroupName=name)
            except AwsCallError as exc:
                if exc.code != "ResourceNotFoundException":
                    raise

    def _active_services(self, region: str, cluster: str) -> list[str]:
        """Services not yet gone (DRAINING ones still hold the cluster on AWS)."""
        ecs = self.client("ecs", region)
        arns = ecs.list_services(cluster=cluster)["serviceArns"]
        if not arns:
            return []
        described = ecs.describe_services(cluster=cluster, services=arns)["services"]
        return [s["serviceName"] for s in described if s.get("status") != "INACTIVE"]

    def leftovers(self, region: str) -> list[str]:
        left = Ec2Copy(self).leftovers(region) + self._our_log_groups(region)
        cluster = self._cluster(region)
        if cluster is not None:
            left.append(cluster["clusterName"])
        ecs = self.client("ecs", region)
        for arn in pages(ecs, "list_task_definitions", "taskDefinitionArns"):
            tags = ecs.list_tags_for_resource(resourceArn=arn).get("tags")
            if self.tags().items() <= tag_dict(tags).items():
                left.append(arn)
        return left
