"""`compute.graviton`: move the environment's app to ARM64 (Graviton), on Fargate or on EC2.

Graviton costs about 20% less than x86 for the same vCPUs and memory, so phase 1 moves the app
there, to whichever target `targets.compute` names:

- ``ecs-fargate-arm64``: a new task definition revision of each ECS service, identical to the
  current one but for ``runtimePlatform.cpuArchitecture = ARM64``, rolled out behind the ALB by
  ECS (new tasks up and healthy before old ones stop), so no downtime is expected.
- ``ec2-asg-graviton`` (the seed's recommended EC2 alternative): an Auto Scaling group of
  ``targets.ec2_instance_type`` instances that run the same image with Docker, in their own
  instance target group; once they are healthy the ALB listener forwards to them and the ECS
  service is scaled to 0 (kept, so rollback is a scale-up and a listener switch).

An x86-only image crash-loops on ARM64, so before anything changes the step reads every image's
manifest from this account's ECR and refuses when there is no linux/arm64 variant, or when it
cannot tell. Images outside this account's ECR cannot be read that way: they are named in the
Change as unchecked, and logged as a warning, so the operator approving the plan sees the risk.

Crash safety: everything the step creates has a deterministic name or an identity it can find
again (the ARM64 revision is found by comparing the family's newer revisions with the current
one), and every action checks before it acts, so a re-run after a crash continues where the
last run stopped and creates nothing twice. Resources the step creates carry the tag
``phasegate:created-by = compute.graviton``; rollback deletes only what carries it.

The Step is `GravitonCompute` below; each target's observe/plan/apply/verify/rollback lives in
its own module, as a strategy class with the same verbs: `FargateArm64` in
tasks.compute_fargate, `Ec2AutoScalingGraviton` in tasks.compute_ec2 (what both share is in
tasks.compute_common).
"""

from typing import Any

from phasegate.inventory import (
    AUTOSCALING_IAM_ACTIONS,
    CACHE_IAM_ACTIONS,
    DATABASE_IAM_ACTIONS,
    LOAD_BALANCER_IAM_ACTIONS,
    SERVICE_IAM_ACTIONS,
    VPC_IAM_ACTIONS,
)
from phasegate.steps import Change, Record, Step
from tasks import compute_terraform
from tasks.compute_common import (
    CREATED_BY_TAG,
    EC2,
    FARGATE,
    ComputeObservation,
    ComputeTarget,
    ImageCheck,
    manifest_verdict,
    parse_ecr_image,
)
from tasks.compute_ec2 import DESIRED_BEFORE_TAG, Ec2AutoScalingGraviton, user_data
from tasks.compute_fargate import FargateArm64, registrable
from tasks.data_access import DATA_ACCESS_IAM_ACTIONS

__all__ = [
    "CREATED_BY_TAG",
    "DESIRED_BEFORE_TAG",
    "EC2",
    "FARGATE",
    "ComputeObservation",
    "GravitonCompute",
    "ImageCheck",
    "manifest_verdict",
    "parse_ecr_image",
    "registrable",
    "user_data",
]


class GravitonCompute(Step):
    """Run the environment's app on Graviton: Fargate ARM64, or an EC2 Auto Scaling group."""

    id = "compute.graviton"
    phase = 1
    title = "Compute to Graviton (Fargate ARM64 or EC2 t4g Auto Scaling group)"
    after = ("nat.remove",)  # both update the ECS services; one deployment at a time
    iam_actions = (
        # discovery: the readers this step uses (no databases or caches)
        *VPC_IAM_ACTIONS,
        *SERVICE_IAM_ACTIONS,
        *LOAD_BALANCER_IAM_ACTIONS,
        *AUTOSCALING_IAM_ACTIONS,
        # images
        "sts:GetCallerIdentity",
        "ecr:BatchGetImage",
        # Fargate ARM64 (ecs:DescribeTaskDefinition comes with SERVICE_IAM_ACTIONS)
        "ecs:ListTaskDefinitions",
        "ecs:RegisterTaskDefinition",
        "ecs:TagResource",
        "ecs:UpdateService",
        "ecs:DeregisterTaskDefinition",
        "iam:PassRole",
        # EC2 Auto Scaling group
        "ssm:GetParameter",
        "ec2:DescribeImages",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeSecurityGroups",
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:DeleteSecurityGroup",
        "ec2:CreateTags",
        "ec2:DescribeLaunchTemplates",
        "ec2:CreateLaunchTemplate",
        "ec2:DeleteLaunchTemplate",
        "ec2:RunInstances",
        "iam:GetRole",
        "iam:CreateRole",
        "iam:TagRole",
        "iam:PutRolePolicy",
        "iam:DeleteRolePolicy",
        "iam:ListRolePolicies",
        "iam:GetRolePolicy",
        "iam:ListAttachedRolePolicies",
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
        # the data stores admit the instances' security group (tasks.data_access)
        *DATABASE_IAM_ACTIONS,
        *CACHE_IAM_ACTIONS,
        *DATA_ACCESS_IAM_ACTIONS,
        "iam:DeleteRole",
        "iam:GetInstanceProfile",
        "iam:CreateInstanceProfile",
        "iam:TagInstanceProfile",
        "iam:AddRoleToInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile",
        "iam:DeleteInstanceProfile",
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeRules",
        "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:AddTags",
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:DeleteTargetGroup",
        "autoscaling:CreateAutoScalingGroup",
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DeleteAutoScalingGroup",
    )

    # -- names and small helpers -----------------------------------------------------------

    @property
    def env(self) -> str:
        return self.ctx.config.name

    @property
    def compute_target(self) -> str:
        return self.ctx.config.targets.compute

    def target(self) -> dict[str, Any]:
        targets = self.ctx.config.targets
        if targets.compute == FARGATE:
            return {"compute": FARGATE}
        return {
            "compute": EC2,
            "instance_type": targets.ec2_instance_type,
            "asg_min": targets.asg_min,
            "asg_max": targets.asg_max,
        }

    def terraform_decisions(self) -> dict[str, Any]:
        """Fargate: the task's CPU architecture; EC2: compute_ec2's group and its sizes
        serving instead of the ECS service."""
        return {k: v for stage in self.terraform_stages() for k, v in stage.items()}

    def terraform_stages(self) -> list[dict[str, Any]]:
        """EC2: the group warmed up behind the listener, then serving, then the ECS service
        gone (tasks.compute_terraform)."""
        targets = self.ctx.config.targets
        if targets.compute == FARGATE:
            return [{"cpu_architecture": "ARM64"}]
        return compute_terraform.ec2_stages(
            targets.ec2_instance_type, targets.asg_min, targets.asg_max
        )

    def terraform_stage_applied(self) -> None:
        compute_terraform.wait_until_serving(self)

    def names(self) -> dict[str, str]:
        """The deterministic names of everything the EC2 target creates."""
        return Ec2AutoScalingGraviton(self).names()

    def strategy(self, target: str) -> ComputeTarget:
        """The class that does the work for `target`: Fargate ARM64, else the EC2 group."""
        if target == FARGATE:
            return FargateArm64(self)
        return Ec2AutoScalingGraviton(self)

    # -- the verbs: each picks its target, then hands over -----------------------------------

    def observe(self) -> ComputeObservation:
        """The ECS services, plus what the configured target needs to decide and to act."""
        return self.strategy(self.compute_target).observe()

    def plan(self, obs: ComputeObservation) -> Change | None:
        """None when the app already runs on the target; a refusal when an image or the
        environment cannot go there; else the change with its cost delta."""
        return self.strategy(obs.target).plan(obs)

    def apply(self, change: Change) -> dict[str, Any]:
        """Make the planned change; the target comes from the Change, which is what was approved."""
        return self.strategy(change.desired.get("target", "")).apply(change)

    def verify(self, record: Record) -> None:
        """Prove from AWS (by discovery and deterministic names) that the app runs on the
        configured target; also run for an "unchanged" Record, whose `after` is empty."""
        self.strategy(self.compute_target).verify(record)

    def rollback(self, record: Record) -> None:
        """Undo what `record` applied; the target comes from the Record, not today's config."""
        self.strategy(record.before.get("target", "")).rollback(record)

    def verify_rollback(self, record: Record) -> None:
        self.strategy(record.before.get("target", "")).verify_rollback(record)
