"""`compute.graviton` on ``ec2-asg-graviton``: the app on an Auto Scaling group of Graviton EC2.

An Auto Scaling group of ``targets.ec2_instance_type`` instances that run the same image with
Docker, in their own instance target group; once they are healthy the ALB listener forwards to
them and the ECS service is scaled to 0 (kept, so rollback is a scale-up and a listener switch).
The instances run the container as ECS ran it (tasks.ec2_boot): the task role's policies on the
instance role, the same log group, the health check, secrets read at boot, IMDSv2 only; and
the data stores admit their new security group as they admit the private subnets
(tasks.data_access), journaled and revoked by rollback before the group is deleted.
Everything it creates has a deterministic name (`names()`) and the created-by tag; rollback
deletes only what carries it.
"""

import base64
import hashlib
import json
from typing import Any

from phasegate.aws import AwsClients
from phasegate.errors import AwsCallError
from phasegate.inventory import AutoScalingGroup, Discovery, EcsService, Inventory, LoadBalancer
from phasegate.steps import (
    Change,
    Record,
    Reversibility,
    Settling,
    StepRefused,
    VerificationFailed,
)
from tasks import data_access
from tasks.compute_common import (
    CREATED_BY_TAG,
    EC2,
    ComputeObservation,
    ComputeTarget,
)
from tasks.ec2_boot import (
    METADATA_HOP_LIMIT,
    boot_policy,
    data_store_cidrs,
    log_refusal,
    user_data,
)
from tasks.security_groups import delete_security_group

# On the Auto Scaling group: the ECS service's desired count before the switch. The group is
# created before the service is scaled to 0, so a re-run after a crash still knows the count
# to restore, although the service it reads then is already at 0.
DESIRED_BEFORE_TAG = "phasegate:ecs-desired-before"

AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id"

# What EC2 instances need to pull an image from ECR (the ECR read-only managed policy's
# actions); GetAuthorizationToken cannot be scoped to a repository.
ECR_PULL_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": [
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
            ],
            "Resource": "*",
        },
    ],
}
EC2_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def bounded_name(base: str, suffix: str, limit: int) -> str:
    """`base-suffix`, or when AWS's name limit is exceeded a shortened, deterministic form."""
    name = f"{base}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:6]
    keep = limit - len(suffix) - len(digest) - 2
    return f"{base[:keep]}-{digest}-{suffix}"


def forward_targets(actions: list[dict[str, Any]]) -> set[str]:
    """Target group ARNs a listener's (or rule's) actions forward to."""
    arns: set[str] = set()
    for action in actions:
        if action.get("Type") != "forward":
            continue
        if action.get("TargetGroupArn"):
            arns.add(action["TargetGroupArn"])
        for group in action.get("ForwardConfig", {}).get("TargetGroups", []):
            arns.add(group["TargetGroupArn"])
    return arns


def healthy_in_service(clients: AwsClients, group: dict[str, Any], target_group: str) -> list[str]:
    """A described Auto Scaling group's InService instances the target group reports healthy."""
    health = clients.elbv2.describe_target_health(TargetGroupArn=target_group)
    healthy = {
        d["Target"]["Id"]
        for d in health["TargetHealthDescriptions"]
        if d["TargetHealth"]["State"] == "healthy"
    }
    return [
        i["InstanceId"]
        for i in group.get("Instances", [])
        if i["LifecycleState"] == "InService" and i["InstanceId"] in healthy
    ]


def weighted_forward(weights: dict[str, int]) -> dict[str, Any]:
    """A forward action splitting traffic between target groups by weight."""
    groups = [{"TargetGroupArn": arn, "Weight": weight} for arn, weight in weights.items()]
    return {"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}


class Ec2AutoScalingGraviton(ComputeTarget):
    """Run the app of the one ECS service on an Auto Scaling group of Graviton instances."""

    def names(self) -> dict[str, str]:
        """The deterministic names of everything the EC2 target creates."""
        return {
            "autoscaling_group": f"{self.env}-app-graviton",
            "launch_template": f"{self.env}-app-graviton",
            "security_group": f"{self.env}-app-graviton",
            "target_group": bounded_name(self.env, "app-ec2", 32),
            "role": bounded_name(self.env, "app-graviton", 64),
            "instance_profile": bounded_name(self.env, "app-graviton", 128),
        }

    def _tags(self, name: str) -> list[dict[str, str]]:
        """Discovery tags (so discovery finds it), a Name, and the created-by marker."""
        tags = dict(self.ctx.config.discovery.tags)
        tags.update({"Name": name, CREATED_BY_TAG: self.id})
        return [{"Key": k, "Value": v} for k, v in tags.items()]

    # -- reading ---------------------------------------------------------------------------------

    def _describe_asg(self, name: str) -> dict[str, Any] | None:
        groups = self.clients.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return groups["AutoScalingGroups"][0] if groups["AutoScalingGroups"] else None

    def _target_group_named(self, name: str) -> dict[str, Any] | None:
        try:
            found = self.clients.elbv2.describe_target_groups(Names=[name])
        except AwsCallError as exc:
            if exc.code == "TargetGroupNotFound":
                return None
            raise
        return found["TargetGroups"][0] if found["TargetGroups"] else None

    def _target_group_tags(self, arn: str) -> list[dict[str, str]]:
        found = self.clients.elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"]
        return found[0].get("Tags", []) if found else []

    def _listeners(self, load_balancers: list[LoadBalancer]) -> list[dict[str, Any]]:
        paginator = self.clients.elbv2.get_paginator("describe_listeners")
        return [
            listener
            for lb in load_balancers
            for page in paginator.paginate(LoadBalancerArn=lb.arn)
            for listener in page["Listeners"]
        ]

    def _listener(self, arn: str) -> dict[str, Any]:
        return self.clients.elbv2.describe_listeners(ListenerArns=[arn])["Listeners"][0]

    def _ec2_done(
        self,
        services: list[EcsService],
        groups: list[AutoScalingGroup],
        asg: dict[str, Any] | None,
        ec2_tg: dict[str, Any] | None,
        listeners: list[dict[str, Any]],
    ) -> bool:
        """The app already runs on a group: an Auto Scaling group of the environment (this
        step's, or one its Terraform stack made under its own names) is in an instance target
        group the ALB forwards to alone, and ECS serves no traffic and runs nothing."""
        attached = {tg for g in groups for tg in g.target_groups}
        if asg is not None and ec2_tg is not None:
            attached |= {ec2_tg["TargetGroupArn"]} & set(asg.get("TargetGroupARNs", []))
        ecs_groups = {tg for s in services for tg in s.target_groups}
        targets = [forward_targets(listener["DefaultActions"]) for listener in listeners]
        return (
            any(len(t) == 1 and t <= attached for t in targets)
            and not any(t & ecs_groups for t in targets)
            and all(s.desired == 0 for s in services)
        )

    def observe(self) -> ComputeObservation:
        """Services, ALB wiring and what a previous run made; when the switch is still to do,
        also the app's container, the arm64 AMI, the instance type and the image verdicts."""
        discovery = Discovery(self.ctx.config, self.clients)
        inventory = self._empty_inventory(
            vpcs=discovery.vpcs(),
            services=discovery.services(),
            load_balancers=discovery.load_balancers(),
            autoscaling_groups=discovery.autoscaling_groups(),
        )
        names = self.names()
        asg = self._describe_asg(names["autoscaling_group"])
        ec2_tg = self._target_group_named(names["target_group"])
        listeners = self._listeners(inventory.load_balancers)
        state: dict[str, Any] = {"names": names, "done": False}
        if self._ec2_done(inventory.services, inventory.autoscaling_groups, asg, ec2_tg, listeners):
            return ComputeObservation(target=EC2, inventory=inventory, ec2={**state, "done": True})
        refusals: list[str] = []
        if asg is not None and not self._ours(asg.get("Tags")):
            refusals.append(
                f"Auto Scaling group {names['autoscaling_group']} exists and was not created "
                "by this step; rename or delete it"
            )
        if len(inventory.services) != 1 or not inventory.services[0].target_groups:
            found = [f"{s.cluster}/{s.name}" for s in inventory.services] or "none"
            refusals.append(
                "ec2-asg-graviton replaces exactly one ECS service behind the ALB; "
                f"found ECS services: {found}"
            )
            return ComputeObservation(target=EC2, inventory=inventory, refusals=refusals, ec2=state)
        app = inventory.services[0]
        key = self._key(app.cluster, app.name)
        binding = self._describe_service(app.cluster, app.name)["loadBalancers"][0]
        task_definition = self._describe_task_definition(app.task_definition)
        containers = task_definition["containerDefinitions"]
        container = next(
            (c for c in containers if c["name"] == binding["containerName"]), containers[0]
        )
        port = int(binding["containerPort"])
        if len(containers) != 1:
            refusals.append(
                f"task definition {app.task_definition} of ECS service {key} has "
                f"{len(containers)} containers; the EC2 group runs one container per instance"
            )
        logging_refusal = log_refusal(container)
        if logging_refusal:
            refusals.append(f"{logging_refusal} (ECS service {key})")
        app_tg = self.clients.elbv2.describe_target_groups(
            TargetGroupArns=[binding["targetGroupArn"]]
        )["TargetGroups"][0]
        if ec2_tg is not None and (
            ec2_tg.get("TargetType") != "instance" or ec2_tg["VpcId"] != app_tg["VpcId"]
        ):
            refusals.append(
                f"target group {names['target_group']} exists with target type "
                f"{ec2_tg.get('TargetType')!r} in {ec2_tg['VpcId']}; an Auto Scaling group "
                f"registers instances, which needs target type 'instance' in {app_tg['VpcId']}"
            )

        # Listeners to switch, with the default actions to restore. A listener already on the
        # group's target group (a previous run switched it, or weighted it in at 0 before the
        # switch) was forwarding to the app's.
        restore: dict[str, list[dict[str, Any]]] = {}
        alb_arns = set()
        for listener in listeners:
            targets = forward_targets(listener["DefaultActions"])
            if targets == {app_tg["TargetGroupArn"]}:
                restore[listener["ListenerArn"]] = listener["DefaultActions"]
            elif ec2_tg is not None and targets in (
                {ec2_tg["TargetGroupArn"]},
                {app_tg["TargetGroupArn"], ec2_tg["TargetGroupArn"]},
            ):
                restore[listener["ListenerArn"]] = [
                    {"Type": "forward", "TargetGroupArn": app_tg["TargetGroupArn"]}
                ]
            elif app_tg["TargetGroupArn"] in targets:
                refusals.append(
                    f"listener {listener['ListenerArn']} splits traffic between "
                    f"{sorted(targets)}; switch it to forward to one target group first"
                )
                continue
            else:
                continue
            alb_arns.add(listener["LoadBalancerArn"])
            for rule in self.clients.elbv2.describe_rules(ListenerArn=listener["ListenerArn"])[
                "Rules"
            ]:
                if not rule.get("IsDefault") and app_tg["TargetGroupArn"] in forward_targets(
                    rule.get("Actions", [])
                ):
                    refusals.append(
                        f"listener rule {rule['RuleArn']} forwards to {app_tg['TargetGroupName']}"
                        "; only default actions are switched, so it would lose its targets"
                    )
        if not restore:
            refusals.append(
                f"no ALB listener of {self.env} forwards to target group "
                f"{app_tg['TargetGroupName']} of ECS service {key}"
            )
        public_subnets = [
            s.id
            for vpc in inventory.vpcs
            if vpc.id == app_tg["VpcId"]
            for s in vpc.subnets
            if s.public
        ]
        if not public_subnets:
            refusals.append(f"VPC {app_tg['VpcId']} has no public subnet for the instances")
        alb_security_groups = sorted(
            {
                sg
                for lb in inventory.load_balancers
                if lb.arn in alb_arns
                for sg in lb.security_groups
            }
        )

        ami, ami_refusal = self._arm64_ami()
        if ami_refusal:
            refusals.append(ami_refusal)
        instance_type = self.ctx.config.targets.ec2_instance_type
        offered = self.clients.ec2.describe_instance_types(InstanceTypes=[instance_type])
        archs = [
            a
            for t in offered["InstanceTypes"]
            for a in t.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
        ]
        if "arm64" not in archs:
            refusals.append(
                f"instance type {instance_type} is not arm64 in {self.ctx.config.aws.region} "
                f"(supported: {archs or 'not offered'})"
            )

        desired_before = app.desired
        if asg is not None:
            tags = {t["Key"]: t["Value"] for t in asg.get("Tags", [])}
            if DESIRED_BEFORE_TAG in tags:
                desired_before = int(tags[DESIRED_BEFORE_TAG])
        state.update(
            {
                "service": {
                    "cluster": app.cluster,
                    "service": app.name,
                    "task_definition": app.task_definition,
                    "desired": desired_before,
                },
                "container": {
                    k: container[k]
                    for k in (
                        "name",
                        "image",
                        "environment",
                        "entryPoint",
                        "command",
                        "secrets",
                        "logConfiguration",
                        "healthCheck",
                    )
                    if k in container
                },
                "account": task_definition["taskDefinitionArn"].split(":")[4],
                "task_role": self._task_role(task_definition.get("taskRoleArn")),
                **self._data_stores(discovery, inventory, app_tg["VpcId"]),
                "port": port,
                "app_target_group": app_tg,
                "listeners": restore,
                "alb_security_groups": alb_security_groups,
                "vpc_id": app_tg["VpcId"],
                "public_subnets": public_subnets,
                "ami": ami,
            }
        )
        return ComputeObservation(
            target=EC2,
            inventory=inventory,
            images=self._check_images({container["image"]: [key]}),
            refusals=refusals,
            ec2=state,
        )

    def _arm64_ami(self) -> tuple[str | None, str | None]:
        """(AMI id, refusal): the ECS-optimized AL2023 arm64 AMI, confirmed arm64 by EC2."""
        try:
            ami = self.clients.ssm.get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
        except AwsCallError as exc:
            if exc.code == "ParameterNotFound":
                return None, f"SSM parameter {AMI_PARAMETER} does not exist in this region"
            raise
        images = self.clients.ec2.describe_images(ImageIds=[ami])["Images"]
        architecture = images[0].get("Architecture") if images else None
        if architecture != "arm64":
            return ami, (
                f"AMI {ami} from {AMI_PARAMETER} is {architecture or 'not found'}, not arm64"
            )
        return ami, None

    def _task_role(self, arn: str | None) -> dict[str, Any] | None:
        """The task role's permissions, which the instance role carries the same: its inline
        policy documents by name and its managed policy ARNs."""
        if not arn:
            return None
        iam, role = self.clients.iam, arn.rsplit("/", 1)[-1]
        inline = {
            name: iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
        }
        managed = sorted(
            p["PolicyArn"]
            for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        )
        return {"arn": arn, "name": role, "inline": inline, "managed": managed}

    def _data_stores(
        self, discovery: Discovery, inventory: Inventory, vpc_id: str
    ) -> dict[str, Any]:
        """The data stores' security groups and whom they admit: the instances come from the
        public subnets, which a Terraform-style rule for the private CIDRs does not admit."""
        stores = inventory.model_copy(
            update={"databases": discovery.databases(), "caches": discovery.caches()}
        )
        private, public = data_store_cidrs(inventory, vpc_id)
        return {
            "data_store_groups": data_access.data_store_groups(self.clients, stores),
            "private_cidrs": private,
            "public_cidrs": public,
        }

    # -- EC2 Auto Scaling group: planning --------------------------------------------------------

    def plan(self, obs: ComputeObservation) -> Change | None:
        state = obs.ec2
        if state["done"]:
            return None
        image_refusals, warnings = self._image_problems(obs)
        refusals = obs.refusals + image_refusals
        if refusals:
            raise StepRefused("; ".join(refusals) + "; nothing was changed")
        targets = self.ctx.config.targets
        names = state["names"]
        service = state["service"]
        key = self._key(service["cluster"], service["service"])
        capacity = min(max(targets.asg_min, service["desired"]), targets.asg_max)
        inventory = obs.inventory
        group = AutoScalingGroup(
            name=names["autoscaling_group"],
            arn="(planned)",
            min_size=targets.asg_min,
            max_size=targets.asg_max,
            desired=capacity,
            instance_types=[targets.ec2_instance_type],
            in_service=capacity,
            subnets=sorted(state["public_subnets"]),
            target_groups=[],
            launch_template=names["launch_template"],
        )
        after = inventory.model_copy(
            update={
                "services": [
                    s.model_copy(update={"desired": 0, "running": 0}) for s in inventory.services
                ],
                "autoscaling_groups": [
                    g for g in inventory.autoscaling_groups if g.name != group.name
                ]
                + [group],
            }
        )
        app_tg = state["app_target_group"]
        actions = [
            f"ec2:CreateSecurityGroup {names['security_group']}: port {state['port']} from the "
            f"ALB's {', '.join(state['alb_security_groups'])} only (reused if it exists)",
            f"iam:CreateRole/CreateInstanceProfile {names['instance_profile']}: ECR pull, "
            + (
                f"the task role {state['task_role']['name']}'s policies "
                f"({len(state['task_role']['inline'])} inline, "
                f"{len(state['task_role']['managed'])} managed), "
                if state["task_role"]
                else ""
            )
            + "the log group and the secrets the container reads (reused if it exists)",
            *(
                f"ec2: let {guards} ({group}) admit {names['security_group']} as it admits "
                f"the private subnets"
                for group, guards in sorted(state["data_store_groups"].items())
            ),
            f"ec2:CreateLaunchTemplate {names['launch_template']}: {targets.ec2_instance_type}, "
            f"{state['ami']} (ECS-optimized AL2023 arm64), user data runs "
            f"{state['container']['image']} on port {state['port']} (reused if it exists)",
            f"elbv2:CreateTargetGroup {names['target_group']}: target type instance "
            f"({app_tg['TargetGroupName']} is target type {app_tg.get('TargetType')!r}, which "
            "an Auto Scaling group cannot register instances in), same port and health check",
            f"autoscaling:CreateAutoScalingGroup {names['autoscaling_group']}: min "
            f"{targets.asg_min}, max {targets.asg_max}, desired {capacity}, public subnets "
            f"{', '.join(state['public_subnets'])}",
            *(
                f"elbv2:ModifyListener {arn}: forward to {app_tg['TargetGroupName']} at weight 1 "
                f"and {names['target_group']} at weight 0 (AWS health-checks a target group only "
                "while a listener forwards to it; users stay on ECS)"
                for arn in state["listeners"]
            ),
            f"wait until {capacity} instances are InService and healthy in {names['target_group']}",
            *(
                f"elbv2:ModifyListener {arn}: forward to {names['target_group']}"
                for arn in state["listeners"]
            ),
            f"ecs:UpdateService {key} desiredCount {service['desired']} -> 0 (kept for rollback)",
            *(f"warning: {w}" for w in warnings),
        ]
        return self.change(
            summary=f"run the app of ECS service {key} on an Auto Scaling group of "
            f"{capacity} {targets.ec2_instance_type} (Graviton) behind the same ALB",
            actions=actions,
            cost_delta=self.ctx.cost_delta(inventory, after),
            reversibility=Reversibility(
                restart_needed=True,
                rollback_possible=True,
                expected_disruption="none expected: the ALB switches to the new instances only "
                "once they are healthy; ECS tasks stop after the switch",
            ),
            before={
                "target": EC2,
                "services": {key: service},
                "listeners": state["listeners"],
            },
            desired={
                "target": EC2,
                "names": names,
                "instance_type": targets.ec2_instance_type,
                "ami": state["ami"],
                "min_size": targets.asg_min,
                "max_size": targets.asg_max,
                "desired_capacity": capacity,
                "vpc_id": state["vpc_id"],
                "public_subnets": state["public_subnets"],
                "alb_security_groups": state["alb_security_groups"],
                "port": state["port"],
                "container": state["container"],
                "account": state["account"],
                "task_role": state["task_role"],
                "data_store_groups": state["data_store_groups"],
                "private_cidrs": state["private_cidrs"],
                "public_cidrs": state["public_cidrs"],
                "app_target_group": app_tg,
                "unchecked_images": warnings,
            },
        )

    # -- EC2 Auto Scaling group: applying --------------------------------------------------------

    def _ensure_security_group(self, name: str, desired: dict[str, Any]) -> str:
        """The instances' security group: the app port from the ALB's groups, nothing else."""
        ec2 = self.clients.ec2
        found = ec2.describe_security_groups(
            Filters=[
                {"Name": "vpc-id", "Values": [desired["vpc_id"]]},
                {"Name": "group-name", "Values": [name]},
            ]
        )["SecurityGroups"]
        if found:
            group = found[0]
        else:
            group_id = ec2.create_security_group(
                GroupName=name,
                Description=f"{self.env} app instances: port {desired['port']} from the ALB only",
                VpcId=desired["vpc_id"],
                TagSpecifications=[{"ResourceType": "security-group", "Tags": self._tags(name)}],
            )["GroupId"]
            self._info("compute.security_group_created", resource=group_id, name=name)
            group = {"GroupId": group_id, "IpPermissions": []}
        port = desired["port"]
        admitted = {
            pair["GroupId"]
            for perm in group.get("IpPermissions", [])
            if perm.get("IpProtocol") == "tcp"
            and perm.get("FromPort") == port
            and perm.get("ToPort") == port
            for pair in perm.get("UserIdGroupPairs", [])
        }
        missing = [sg for sg in desired["alb_security_groups"] if sg not in admitted]
        if missing:
            ec2.authorize_security_group_ingress(
                GroupId=group["GroupId"],
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": port,
                        "ToPort": port,
                        "UserIdGroupPairs": [{"GroupId": sg} for sg in missing],
                    }
                ],
            )
            self._info("compute.security_group_ingress", resource=group["GroupId"], sources=missing)
        return group["GroupId"]

    def _ensure_instance_profile(self, role: str, profile: str, desired: dict[str, Any]) -> str:
        """An instance profile whose role may pull from ECR, write the container's logs, read
        its secrets at boot, and do what the task role may (the same policies)."""
        iam = self.clients.iam
        try:
            iam.get_role(RoleName=role)
        except AwsCallError as exc:
            if exc.code != "NoSuchEntity":
                raise
            iam.create_role(
                RoleName=role,
                AssumeRolePolicyDocument=json.dumps(EC2_TRUST_POLICY),
                Description=f"{self.env} app instances (phasegate compute.graviton)",
                Tags=self._tags(role),
            )
            self._info("compute.role_created", resource=role)
        iam.put_role_policy(
            RoleName=role, PolicyName="ecr-pull", PolicyDocument=json.dumps(ECR_PULL_POLICY)
        )
        boot = boot_policy(desired["container"], self.ctx.config.aws.region, desired["account"])
        if boot:
            iam.put_role_policy(RoleName=role, PolicyName="boot", PolicyDocument=json.dumps(boot))
        task_role = desired.get("task_role")
        if task_role:
            for name, document in sorted(task_role["inline"].items()):
                iam.put_role_policy(
                    RoleName=role,
                    PolicyName=f"task-{name}"[:128],
                    PolicyDocument=document if isinstance(document, str) else json.dumps(document),
                )
            attached = {
                p["PolicyArn"]
                for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
            }
            for arn in task_role["managed"]:
                if arn not in attached:
                    iam.attach_role_policy(RoleName=role, PolicyArn=arn)
            self._info("compute.task_role_carried", resource=role, task_role=task_role["arn"])
        try:
            found = iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]
        except AwsCallError as exc:
            if exc.code != "NoSuchEntity":
                raise
            found = iam.create_instance_profile(
                InstanceProfileName=profile, Tags=self._tags(profile)
            )["InstanceProfile"]
            self._info("compute.instance_profile_created", resource=profile)
        if role not in {r["RoleName"] for r in found.get("Roles", [])}:
            iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=role)
        return profile

    def _ensure_launch_template(
        self, name: str, desired: dict[str, Any], security_group: str, profile: str
    ) -> str:
        ec2 = self.clients.ec2
        try:
            found = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
        except AwsCallError as exc:
            if exc.code != "InvalidLaunchTemplateName.NotFoundException":
                raise
            found = []
        if found:
            self._info("compute.launch_template_reused", resource=found[0]["LaunchTemplateId"])
            return found[0]["LaunchTemplateId"]
        script = user_data(
            desired["container"],
            desired["port"],
            region=self.ctx.config.aws.region,
            account=desired.get("account", ""),
        )
        template = ec2.create_launch_template(
            LaunchTemplateName=name,
            VersionDescription=f"{desired['container']['image']} on {desired['instance_type']}",
            LaunchTemplateData={
                "ImageId": desired["ami"],
                "InstanceType": desired["instance_type"],
                "IamInstanceProfile": {"Name": profile},
                "NetworkInterfaces": [
                    {
                        "DeviceIndex": 0,
                        "AssociatePublicIpAddress": True,
                        "Groups": [security_group],
                        "DeleteOnTermination": True,
                    }
                ],
                "MetadataOptions": {
                    "HttpTokens": "required",
                    "HttpEndpoint": "enabled",
                    "HttpPutResponseHopLimit": METADATA_HOP_LIMIT,
                },
                "UserData": base64.b64encode(script.encode()).decode(),
            },
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": self._tags(name)}],
        )["LaunchTemplate"]
        self._info("compute.launch_template_created", resource=template["LaunchTemplateId"])
        return template["LaunchTemplateId"]

    def _ensure_target_group(self, name: str, desired: dict[str, Any]) -> str:
        """An instance target group like the app's: same VPC, port, protocol, health check."""
        found = self._target_group_named(name)
        if found:
            return found["TargetGroupArn"]
        app = desired["app_target_group"]
        copied = {
            k: app[k]
            for k in (
                "Protocol",
                "ProtocolVersion",
                "HealthCheckProtocol",
                "HealthCheckPort",
                "HealthCheckEnabled",
                "HealthCheckPath",
                "HealthCheckIntervalSeconds",
                "HealthCheckTimeoutSeconds",
                "HealthyThresholdCount",
                "UnhealthyThresholdCount",
                "Matcher",
                "IpAddressType",
            )
            if app.get(k) is not None
        }
        arn = self.clients.elbv2.create_target_group(
            Name=name,
            Port=desired["port"],
            VpcId=desired["vpc_id"],
            TargetType="instance",
            Tags=self._tags(name),
            **copied,
        )["TargetGroups"][0]["TargetGroupArn"]
        self._info("compute.target_group_created", resource=arn)
        return arn

    def _require_instance_target_groups(self, arns: list[str]) -> None:
        """Refuse target groups an Auto Scaling group cannot register its instances in.

        AWS refuses an ASG on an 'ip' (or 'lambda'/'alb') target group; moto accepts it, so the
        step checks rather than learning it from a failed launch on AWS.
        """
        groups = self.clients.elbv2.describe_target_groups(TargetGroupArns=arns)["TargetGroups"]
        wrong = [g for g in groups if g.get("TargetType", "instance") != "instance"]
        if wrong:
            raise StepRefused(
                ", ".join(
                    f"target group {g['TargetGroupName']} is {g['TargetType']!r}" for g in wrong
                )
                + "; an Auto Scaling group registers instances, which needs target type 'instance'"
            )

    def _ensure_asg(
        self,
        name: str,
        template_id: str,
        target_group: str,
        desired: dict[str, Any],
        desired_before: int,
    ) -> None:
        if self._describe_asg(name) is not None:
            self._info("compute.autoscaling_group_reused", resource=name)
            return
        self._require_instance_target_groups([target_group])
        tags = [
            {"Key": t["Key"], "Value": t["Value"], "PropagateAtLaunch": True}
            for t in self._tags(name)
        ]
        tags.append(
            {"Key": DESIRED_BEFORE_TAG, "Value": str(desired_before), "PropagateAtLaunch": False}
        )
        self.clients.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateId": template_id, "Version": "$Latest"},
            MinSize=desired["min_size"],
            MaxSize=desired["max_size"],
            DesiredCapacity=desired["desired_capacity"],
            VPCZoneIdentifier=",".join(desired["public_subnets"]),
            TargetGroupARNs=[target_group],
            HealthCheckType="ELB",
            HealthCheckGracePeriod=300,
            Tags=tags,
        )
        self._info("compute.autoscaling_group_created", resource=name)

    def _healthy_instances(self, name: str, target_group: str) -> tuple[dict | None, list[str]]:
        """The group, and its InService instances the target group reports healthy."""
        group = self._describe_asg(name)
        if group is None:
            return None, []
        return group, healthy_in_service(self.clients, group, target_group)

    def apply(self, change: Change) -> dict[str, Any]:
        desired, names = change.desired, change.desired["names"]
        [service] = change.before["services"].values()
        security_group = self._ensure_security_group(names["security_group"], desired)
        self.progress(security_group=security_group)
        admitted: list[dict[str, Any]] = []
        for rule in data_access.needed_rules(
            self.clients,
            desired.get("data_store_groups", {}),
            desired.get("private_cidrs", []),
            desired.get("public_cidrs", []),
            security_group,
        ):
            data_access.admit(self.clients, rule)
            admitted.append(rule)
            self.progress(data_store_rules=admitted)
            self._info("compute.data_store_admitted", resource=rule["group_id"], rule=rule)
        profile = self._ensure_instance_profile(names["role"], names["instance_profile"], desired)
        template = self._ensure_launch_template(
            names["launch_template"], desired, security_group, profile
        )
        target_group = self._ensure_target_group(names["target_group"], desired)
        self._ensure_asg(
            names["autoscaling_group"], template, target_group, desired, service["desired"]
        )
        # AWS health-checks a target group only while a listener forwards to it: a weighted
        # forward with the new group at weight 0 brings it into use without sending it users.
        app_tg = desired["app_target_group"]["TargetGroupArn"]
        for arn in change.before["listeners"]:
            if target_group not in forward_targets(self._listener(arn)["DefaultActions"]):
                self.clients.elbv2.modify_listener(
                    ListenerArn=arn,
                    DefaultActions=[weighted_forward({app_tg: 1, target_group: 0})],
                )
                self._info("compute.listener_weighted", resource=arn, target_group=target_group)
        capacity = desired["desired_capacity"]
        self.ctx.wait(
            f"Auto Scaling group {names['autoscaling_group']}: {capacity} instances InService "
            f"and healthy in {names['target_group']}",
            lambda: self._healthy_instances(names["autoscaling_group"], target_group),
            lambda found: len(found[1]) >= capacity,
        )
        for arn in change.before["listeners"]:
            if forward_targets(self._listener(arn)["DefaultActions"]) != {target_group}:
                self.clients.elbv2.modify_listener(
                    ListenerArn=arn,
                    DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group}],
                )
                self._info("compute.listener_switched", resource=arn, target_group=target_group)
        self._scale_service(service["cluster"], service["service"], 0)
        return {
            "target": EC2,
            "autoscaling_group": names["autoscaling_group"],
            "launch_template": template,
            "target_group": target_group,
            "security_group": security_group,
            "data_store_rules": admitted,
            "role": names["role"],
            "instance_profile": profile,
        }

    # -- EC2 Auto Scaling group: verifying and rolling back --------------------------------------

    def verify(self, record: Record) -> None:
        names = self.names()
        group_name = names["autoscaling_group"]
        target_group = self._target_group_named(names["target_group"])
        if target_group is None:
            raise VerificationFailed(f"target group {names['target_group']} does not exist")
        tg_arn = target_group["TargetGroupArn"]
        group, healthy = self._healthy_instances(group_name, tg_arn)
        if group is None:
            raise VerificationFailed(f"Auto Scaling group {group_name} does not exist")
        in_service = [i for i in group["Instances"] if i["LifecycleState"] == "InService"]
        if len(in_service) != group["DesiredCapacity"]:
            raise Settling(
                f"Auto Scaling group {group_name} has {len(in_service)} InService instances, "
                f"desired {group['DesiredCapacity']}"
            )
        instance_type = self.ctx.config.targets.ec2_instance_type
        wrong = [i["InstanceId"] for i in in_service if i.get("InstanceType") != instance_type]
        if wrong:
            raise VerificationFailed(
                f"Auto Scaling group {group_name}: instances {wrong} are not {instance_type}"
            )
        if tg_arn not in group.get("TargetGroupARNs", []):
            raise VerificationFailed(
                f"Auto Scaling group {group_name} is not attached to {names['target_group']}"
            )
        unhealthy = sorted({i["InstanceId"] for i in in_service} - set(healthy))
        if unhealthy:
            raise Settling(
                f"instances {unhealthy} of {group_name} are not healthy in {names['target_group']}"
            )
        for rule in record.after.get("data_store_rules", []):
            if not data_access.rule_present(self.clients, rule):
                raise VerificationFailed(
                    f"{rule['guards']} ({rule['group_id']}) no longer admits "
                    f"{rule['source_group']} on {rule['from_port']}"
                )
        discovery = Discovery(self.ctx.config, self.clients)
        services = discovery.services()
        listeners = self._listeners(discovery.load_balancers())
        ecs_groups = {tg for s in services for tg in s.target_groups}
        targets = {x["ListenerArn"]: forward_targets(x["DefaultActions"]) for x in listeners}
        if not any(t == {tg_arn} for t in targets.values()):
            raise VerificationFailed(
                f"no ALB listener of {self.env} forwards to {names['target_group']}"
            )
        still = [arn for arn, t in targets.items() if t & ecs_groups]
        if still:
            raise VerificationFailed(f"listeners {still} still forward to the ECS target group")
        for s in services:
            if s.desired or s.running:
                raise VerificationFailed(
                    f"ECS service {s.cluster}/{s.name} is at desired {s.desired}, "
                    f"running {s.running}, not 0"
                )

    def rollback(self, record: Record) -> None:
        """ECS back up first (so the old target group has tasks), then the listeners, then the
        group and everything this step created, each only if it still exists and is ours."""
        names = record.change.desired["names"] if record.change else self.names()
        for service in record.before["services"].values():
            self._scale_service(service["cluster"], service["service"], service["desired"])
        for arn, actions in record.before["listeners"].items():
            if forward_targets(self._listener(arn)["DefaultActions"]) != forward_targets(actions):
                self.clients.elbv2.modify_listener(ListenerArn=arn, DefaultActions=actions)
                self._info("compute.listener_restored", resource=arn)

        group_name = names["autoscaling_group"]
        group = self._describe_asg(group_name)
        if group is not None and self._ours(group.get("Tags")):
            if group.get("Status") != "Delete in progress":
                self.clients.autoscaling.delete_auto_scaling_group(
                    AutoScalingGroupName=group_name, ForceDelete=True
                )
                self._info("compute.autoscaling_group_deleted", resource=group_name)
            self.ctx.wait(
                f"Auto Scaling group {group_name} deleted",
                lambda: self._describe_asg(group_name),
                lambda g: g is None,
            )

        target_group = self._target_group_named(names["target_group"])
        if target_group is not None and self._ours(
            self._target_group_tags(target_group["TargetGroupArn"])
        ):
            self.clients.elbv2.delete_target_group(TargetGroupArn=target_group["TargetGroupArn"])
            self._info("compute.target_group_deleted", resource=target_group["TargetGroupArn"])

        ec2 = self.clients.ec2
        try:
            templates = ec2.describe_launch_templates(
                LaunchTemplateNames=[names["launch_template"]]
            )["LaunchTemplates"]
        except AwsCallError as exc:
            if exc.code != "InvalidLaunchTemplateName.NotFoundException":
                raise
            templates = []
        for template in templates:
            if self._ours(template.get("Tags")):
                ec2.delete_launch_template(LaunchTemplateId=template["LaunchTemplateId"])
                self._info("compute.launch_template_deleted", resource=template["LaunchTemplateId"])

        for rule in record.after.get("data_store_rules", []):
            if data_access.revoke(self.clients, rule):
                self._info("compute.data_store_revoked", resource=rule["group_id"], rule=rule)

        vpc_id = record.change.desired["vpc_id"] if record.change else None
        filters = [{"Name": "group-name", "Values": [names["security_group"]]}]
        if vpc_id:
            filters.append({"Name": "vpc-id", "Values": [vpc_id]})
        for group in ec2.describe_security_groups(Filters=filters)["SecurityGroups"]:
            if self._ours(group.get("Tags")):
                self._delete_security_group(group["GroupId"])

        self._delete_instance_profile(names["role"], names["instance_profile"])

    def _delete_security_group(self, group_id: str) -> None:
        delete_security_group(self.ctx, group_id)
        self._info("compute.security_group_deleted", resource=group_id)

    def _delete_instance_profile(self, role: str, profile: str) -> None:
        iam = self.clients.iam
        try:
            found = iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]
        except AwsCallError as exc:
            if exc.code != "NoSuchEntity":
                raise
            found = None
        if found is not None and self._ours(found.get("Tags")):
            for attached in found.get("Roles", []):
                iam.remove_role_from_instance_profile(
                    InstanceProfileName=profile, RoleName=attached["RoleName"]
                )
            iam.delete_instance_profile(InstanceProfileName=profile)
            self._info("compute.instance_profile_deleted", resource=profile)
        try:
            found_role = iam.get_role(RoleName=role)["Role"]
        except AwsCallError as exc:
            if exc.code != "NoSuchEntity":
                raise
            return
        if self._ours(found_role.get("Tags")):
            for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
                iam.detach_role_policy(RoleName=role, PolicyArn=attached["PolicyArn"])
            for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
                iam.delete_role_policy(RoleName=role, PolicyName=policy)
            iam.delete_role(RoleName=role)
            self._info("compute.role_deleted", resource=role)

    def verify_rollback(self, record: Record) -> None:
        for service in record.before["services"].values():
            key = self._key(service["cluster"], service["service"])
            svc = self._describe_service(service["cluster"], service["service"])
            if (
                svc["desiredCount"] != service["desired"]
                or svc["runningCount"] != service["desired"]
            ):
                raise VerificationFailed(
                    f"ECS service {key} is at desired {svc['desiredCount']}, running "
                    f"{svc['runningCount']}, not {service['desired']}"
                )
        for arn, actions in record.before["listeners"].items():
            now = forward_targets(self._listener(arn)["DefaultActions"])
            if now != forward_targets(actions):
                wanted = sorted(forward_targets(actions))
                raise VerificationFailed(f"listener {arn} forwards to {sorted(now)}, not {wanted}")
        for rule in record.after.get("data_store_rules", []):
            if data_access.rule_present(self.clients, rule):
                raise VerificationFailed(
                    f"{rule['guards']} ({rule['group_id']}) still admits {rule['source_group']}"
                )
        names = record.change.desired["names"] if record.change else self.names()
        if self._describe_asg(names["autoscaling_group"]) is not None:
            raise VerificationFailed(
                f"Auto Scaling group {names['autoscaling_group']} still exists"
            )

    # -- ECS services: scaling ---------------------------------------------------------------

    def _scale_service(self, cluster: str, service: str, desired: int) -> None:
        """Set the service's desired count (unless it already is) and wait running == desired."""
        svc = self._describe_service(cluster, service)
        if svc["desiredCount"] != desired:
            self.clients.ecs.update_service(cluster=cluster, service=service, desiredCount=desired)
            self._info(
                "compute.service_scaled", resource=self._key(cluster, service), desired=desired
            )
        self.ctx.wait(
            f"ECS service {cluster}/{service} running {desired}",
            lambda: self._describe_service(cluster, service),
            lambda s: s["desiredCount"] == desired and s["runningCount"] == desired,
            kind="ecs_deploy",
        )
