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
"""

import base64
import hashlib
import json
import re
import shlex
from typing import Any

from pydantic import BaseModel

from phasegate.errors import AwsCallError
from phasegate.inventory import (
    AUTOSCALING_IAM_ACTIONS,
    LOAD_BALANCER_IAM_ACTIONS,
    SERVICE_IAM_ACTIONS,
    VPC_IAM_ACTIONS,
    AutoScalingGroup,
    Discovery,
    EcsService,
    Inventory,
    LoadBalancer,
)
from phasegate.steps import (
    Change,
    Observation,
    Record,
    Reversibility,
    Step,
    StepRefused,
    VerificationFailed,
)
from tasks.security_groups import delete_security_group

FARGATE = "ecs-fargate-arm64"
EC2 = "ec2-asg-graviton"

CREATED_BY_TAG = "phasegate:created-by"
# On an ARM64 revision: the revision it was copied from, for audit.
ARM64_OF_TAG = "phasegate:arm64-of"
# On the Auto Scaling group: the ECS service's desired count before the switch. The group is
# created before the service is scaled to 0, so a re-run after a crash still knows the count
# to restore, although the service it reads then is already at 0.
DESIRED_BEFORE_TAG = "phasegate:ecs-desired-before"

MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_V1 = (
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
)
INDEX_MEDIA_TYPES = (MANIFEST_LIST, OCI_INDEX)

# <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]/<repository>[:tag][@digest]
_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repository>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)

AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id"

# describe_task_definition fields that register_task_definition accepts under the same name.
REGISTRABLE_FIELDS = (
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
    "enableFaultInjection",
)

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


# -- helpers that need no AWS ------------------------------------------------------------------


class EcrImage(BaseModel):
    """An image reference in some account's ECR, split into the parts ECR's API wants."""

    account: str
    region: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def registry(self) -> str:
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com"

    @property
    def image_id(self) -> dict[str, str]:
        return {"imageDigest": self.digest} if self.digest else {"imageTag": self.tag or "latest"}


def parse_ecr_image(image: str) -> EcrImage | None:
    """The ECR parts of `image`, or None when it is not an ECR private registry URI."""
    match = _ECR_IMAGE.match(image)
    if not match:
        return None
    return EcrImage(**match.groupdict())


class ImageCheck(BaseModel):
    """Whether one image can run on linux/arm64, as far as its registry can tell.

    verdict: ``arm64`` (it can), ``no-arm64`` (it cannot), ``unknown`` (ECR could not say),
    ``missing`` (not in ECR), ``unchecked`` (outside this account's ECR: not readable here).
    """

    image: str
    services: list[str]
    verdict: str
    detail: str


def manifest_verdict(manifest: dict[str, Any], media_type: str) -> tuple[str, str]:
    """(verdict, detail) for one manifest as ECR returned it.

    A manifest list / OCI index names its platforms; a schema 1 manifest carries its
    architecture; a single schema 2 / OCI manifest does not (it is in the config blob).
    """
    if media_type in INDEX_MEDIA_TYPES or "manifests" in manifest:
        platforms = [
            f"{p.get('os', '?')}/{p.get('architecture', '?')}"
            + (f"/{p['variant']}" if p.get("variant") else "")
            for m in manifest.get("manifests", [])
            if (p := m.get("platform"))
            and not (p.get("os") == "unknown" and p.get("architecture") == "unknown")
        ]
        if "linux/arm64" in {"/".join(p.split("/")[:2]) for p in platforms}:
            return "arm64", f"multi-arch manifest with {', '.join(platforms)}"
        shown = ", ".join(platforms) or "no platforms"
        return "no-arm64", f"its manifest list has no linux/arm64 manifest (only {shown})"
    if manifest.get("schemaVersion") == 1 and manifest.get("architecture"):
        arch = manifest["architecture"]
        if arch == "arm64":
            return "arm64", "single-platform image for arm64"
        return "no-arm64", f"it is a single-platform image for {arch}, with no arm64 variant"
    return (
        "unknown",
        "it is a single-platform manifest and ECR did not say its architecture "
        "(no manifest list, no schema 1 conversion), so arm64 support cannot be confirmed",
    )


def registrable(task_definition: dict[str, Any]) -> dict[str, Any]:
    """The fields of a described task definition that a new revision can be registered with."""
    return {
        k: task_definition[k]
        for k in REGISTRABLE_FIELDS
        if task_definition.get(k) not in (None, [], {})
    }


def arm64_spec(task_definition: dict[str, Any]) -> dict[str, Any]:
    """The registration of `task_definition` with cpuArchitecture ARM64, all else unchanged."""
    spec = registrable(task_definition)
    platform = dict(spec.get("runtimePlatform") or {})
    platform["cpuArchitecture"] = "ARM64"
    platform.setdefault("operatingSystemFamily", "LINUX")
    spec["runtimePlatform"] = platform
    return spec


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


def user_data(container: dict[str, Any], port: int) -> str:
    """The instances' boot script: run the task definition's container with Docker.

    The ECS-optimized AMI has Docker; its ECS agent is stopped because these instances join no
    cluster. An ECR image needs a registry login, which the instance role allows.
    """
    image = container["image"]
    lines = [
        "#!/bin/bash",
        f"# phasegate compute.graviton: run {image} on port {port}, as the ECS task did.",
        "set -euo pipefail",
        "command -v docker >/dev/null || dnf install -y docker",
        "systemctl enable --now docker",
        "systemctl disable --now ecs 2>/dev/null || true",
    ]
    ecr = parse_ecr_image(image)
    if ecr:
        lines += [
            "command -v aws >/dev/null || dnf install -y awscli-2",
            f"aws ecr get-login-password --region {ecr.region} "
            f"| docker login --username AWS --password-stdin {ecr.registry}",
        ]
    run = ["docker", "run", "--detach", "--name", container["name"]]
    run += ["--restart", "unless-stopped", "--publish", f"{port}:{port}"]
    for variable in container.get("environment", []):
        run += ["--env", f"{variable['name']}={variable['value']}"]
    entry_point = list(container.get("entryPoint") or [])
    if entry_point:
        run += ["--entrypoint", entry_point[0]]
    run += [image, *entry_point[1:], *(container.get("command") or [])]
    lines += [f"docker pull {shlex.quote(image)}", shlex.join(run), ""]
    return "\n".join(lines)


# -- the step ----------------------------------------------------------------------------------


class ComputeObservation(Observation):
    """What the step read: the services, their task definitions and images, and (EC2) the ALB
    wiring and the resources a previous run may have made."""

    target: str
    inventory: Inventory
    task_definitions: dict[str, dict[str, Any]] = {}
    images: list[ImageCheck] = []
    refusals: list[str] = []
    ec2: dict[str, Any] = {}


class GravitonCompute(Step):
    """Run the environment's app on Graviton: Fargate ARM64, or an EC2 Auto Scaling group."""

    id = "compute.graviton"
    phase = 1
    title = "Compute to Graviton (Fargate ARM64 or EC2 t4g Auto Scaling group)"
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

    def _info(self, event: str, resource: str, **kw: Any) -> None:
        if self.log:
            self.log.info(event, resource=resource, **kw)

    def _warning(self, event: str, resource: str, **kw: Any) -> None:
        if self.log:
            self.log.warning(event, resource=resource, **kw)

    def _tags(self, name: str) -> list[dict[str, str]]:
        """Discovery tags (so discovery finds it), a Name, and the created-by marker."""
        tags = dict(self.ctx.config.discovery.tags)
        tags.update({"Name": name, CREATED_BY_TAG: self.id})
        return [{"Key": k, "Value": v} for k, v in tags.items()]

    @staticmethod
    def _ours(tags: list[dict[str, str]] | None) -> bool:
        return any(
            t.get("Key", t.get("key")) == CREATED_BY_TAG
            and t.get("Value", t.get("value")) == GravitonCompute.id
            for t in tags or []
        )

    @staticmethod
    def _key(cluster: str, service: str) -> str:
        return f"{cluster}/{service}"

    def _empty_inventory(self, **parts: Any) -> Inventory:
        base: dict[str, Any] = {
            "vpcs": [],
            "services": [],
            "load_balancers": [],
            "databases": [],
            "caches": [],
            "autoscaling_groups": [],
        }
        base.update(parts)
        return Inventory(environment=self.env, region=self.ctx.config.aws.region, **base)

    # -- reading -----------------------------------------------------------------------------

    def _describe_task_definition(self, arn: str) -> dict[str, Any]:
        """The task definition with its tags under "tags"."""
        found = self.clients.ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
        return {**found["taskDefinition"], "tags": found.get("tags", [])}

    def _describe_service(self, cluster: str, service: str) -> dict[str, Any]:
        found = self.clients.ecs.describe_services(cluster=cluster, services=[service])
        if not found["services"]:
            raise VerificationFailed(f"ECS service {cluster}/{service} does not exist")
        return found["services"][0]

    def _check_images(self, images: dict[str, list[str]]) -> list[ImageCheck]:
        """Each image's arm64 verdict, from its manifest in this account's ECR.

        Manifest lists and OCI indexes are asked for first; for a single manifest ECR is asked
        for the schema 1 form it converts to on request (pulled by tag), which names the
        architecture. Only BatchGetImage is used: read-only, no layer downloads.
        """
        checks = []
        account: str | None = None
        for image, services in sorted(images.items()):
            ecr = parse_ecr_image(image)
            if ecr is None:
                checks.append(
                    ImageCheck(
                        image=image,
                        services=services,
                        verdict="unchecked",
                        detail="not in ECR, so its arm64 support was not checked",
                    )
                )
                continue
            if account is None:
                account = self.clients.sts.get_caller_identity()["Account"]
            if ecr.account != account:
                checks.append(
                    ImageCheck(
                        image=image,
                        services=services,
                        verdict="unchecked",
                        detail=f"in another account's ECR ({ecr.account}), so its arm64 "
                        "support was not checked",
                    )
                )
                continue
            verdict, detail = self._ecr_verdict(ecr)
            checks.append(
                ImageCheck(image=image, services=services, verdict=verdict, detail=detail)
            )
        return checks

    def _get_manifest(self, ecr: EcrImage, media_types: list[str]) -> tuple[dict, str] | None:
        try:
            found = self.clients.client("ecr", ecr.region).batch_get_image(
                registryId=ecr.account,
                repositoryName=ecr.repository,
                imageIds=[ecr.image_id],
                acceptedMediaTypes=media_types,
            )
        except AwsCallError as exc:
            if exc.code in ("RepositoryNotFoundException", "ImageNotFoundException"):
                return None
            raise
        if not found.get("images"):
            return None
        image = found["images"][0]
        manifest = json.loads(image["imageManifest"])
        return manifest, image.get("imageManifestMediaType") or manifest.get("mediaType", "")

    def _ecr_verdict(self, ecr: EcrImage) -> tuple[str, str]:
        got = self._get_manifest(ecr, [*INDEX_MEDIA_TYPES, MANIFEST_V2, OCI_MANIFEST])
        if got is None:
            return "missing", f"it is not in ECR repository {ecr.repository}"
        verdict, detail = manifest_verdict(*got)
        if verdict == "unknown" and not ecr.digest:  # ECR converts only when pulled by tag
            converted = self._get_manifest(ecr, list(MANIFEST_V1))
            if converted is not None:
                verdict, detail = manifest_verdict(*converted)
        return verdict, detail

    def observe(self) -> ComputeObservation:
        """The ECS services, plus what the configured target needs to decide and to act."""
        if self.compute_target == FARGATE:
            return self._observe_fargate()
        return self._observe_ec2()

    # -- planning ------------------------------------------------------------------------------

    def plan(self, obs: ComputeObservation) -> Change | None:
        """None when the app already runs on the target; a refusal when an image or the
        environment cannot go there; else the change with its cost delta."""
        if obs.target == FARGATE:
            return self._plan_fargate(obs)
        return self._plan_ec2(obs)

    def _image_problems(self, obs: ComputeObservation) -> tuple[list[str], list[str]]:
        """(refusals, warnings) from the image checks."""
        refusals, warnings = [], []
        for check in obs.images:
            where = ", ".join(f"ECS service {s}" for s in check.services)
            if check.verdict in ("no-arm64", "unknown", "missing"):
                refusals.append(
                    f"image {check.image} of {where} cannot be confirmed to run on linux/arm64: "
                    f"{check.detail}; push a multi-arch image "
                    "(docker buildx build --platform linux/amd64,linux/arm64) first"
                )
            elif check.verdict == "unchecked":
                warnings.append(f"image {check.image} of {where} is {check.detail}")
                self._warning("compute.image_unchecked", resource=check.image, detail=check.detail)
        return refusals, warnings

    def apply(self, change: Change) -> dict[str, Any]:
        """Make the planned change; the target comes from the Change, which is what was approved."""
        if change.desired.get("target") == FARGATE:
            return self._apply_fargate(change)
        return self._apply_ec2(change)

    def verify(self, record: Record) -> None:
        """Prove from AWS (by discovery and deterministic names) that the app runs on the
        configured target; also run for an "unchanged" Record, whose `after` is empty."""
        if self.compute_target == FARGATE:
            self._verify_fargate()
        else:
            self._verify_ec2()

    def rollback(self, record: Record) -> None:
        """Undo what `record` applied; the target comes from the Record, not today's config."""
        if record.before.get("target") == FARGATE:
            self._rollback_fargate(record)
        else:
            self._rollback_ec2(record)

    def verify_rollback(self, record: Record) -> None:
        if record.before.get("target") == FARGATE:
            self._verify_rollback_fargate(record)
        else:
            self._verify_rollback_ec2(record)

    # -- ECS services: switching and waiting -------------------------------------------------

    def _wait_service(self, cluster: str, service: str, task_definition: str) -> dict[str, Any]:
        """Wait until the service runs only `task_definition`, with running == desired.

        One deployment left means ECS has drained the old tasks (the services_stable waiter's
        test); a deployment ECS marks FAILED (circuit breaker) ends the wait at once.
        """

        def done(svc: dict[str, Any]) -> bool:
            for deployment in svc.get("deployments", []):
                if deployment.get("rolloutState") == "FAILED":
                    raise VerificationFailed(
                        f"ECS deployment of {deployment.get('taskDefinition')} in service "
                        f"{cluster}/{service} failed: {deployment.get('rolloutStateReason', '')}"
                    )
            return (
                svc["taskDefinition"] == task_definition
                and svc["runningCount"] == svc["desiredCount"]
                and len(svc.get("deployments", [])) <= 1
            )

        return self.ctx.wait(
            f"ECS service {cluster}/{service} stable on {task_definition}",
            lambda: self._describe_service(cluster, service),
            done,
        )

    def _switch_service(self, cluster: str, service: str, task_definition: str) -> None:
        """Point the service at `task_definition` (unless it already is) and wait stable.

        desiredCount is passed as it is now: AWS accepts it unchanged, and it keeps the
        service's running count tracking the new deployment.
        """
        svc = self._describe_service(cluster, service)
        if svc["taskDefinition"] != task_definition:
            self.clients.ecs.update_service(
                cluster=cluster,
                service=service,
                taskDefinition=task_definition,
                desiredCount=svc["desiredCount"],
                forceNewDeployment=True,
            )
            self._info(
                "compute.service_updated",
                resource=self._key(cluster, service),
                task_definition=task_definition,
            )
        self._wait_service(cluster, service, task_definition)

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
        )

    # -- Fargate ARM64 ---------------------------------------------------------------------------

    def _observe_fargate(self) -> ComputeObservation:
        """Services and, for those not yet ARM64, their task definitions and image verdicts."""
        services = Discovery(self.ctx.config, self.clients).services()
        pending = [s for s in services if s.architecture != "ARM64"]
        task_definitions = {
            arn: self._describe_task_definition(arn)
            for arn in dict.fromkeys(s.task_definition for s in pending)
        }
        images: dict[str, list[str]] = {}
        for s in pending:
            for image in s.images:
                images.setdefault(image, []).append(self._key(s.cluster, s.name))
        return ComputeObservation(
            target=FARGATE,
            inventory=self._empty_inventory(services=services),
            task_definitions=task_definitions,
            images=self._check_images(images),
        )

    @staticmethod
    def _fargate_refusal(service: EcsService, task_definition: dict[str, Any]) -> str | None:
        """Why `service` cannot run on Fargate ARM64, or None."""
        name = f"ECS service {service.cluster}/{service.name}"
        providers = {p["capacityProvider"] for p in service.capacity_provider_strategy}
        if providers - {"FARGATE"}:
            return (
                f"{name} uses capacity providers {sorted(providers)}; Fargate runs ARM64 tasks "
                "only on the FARGATE provider (FARGATE_SPOT is X86_64 only)"
            )
        if not providers and service.launch_type not in (None, "FARGATE"):
            return (
                f"{name} runs on launch type {service.launch_type}; its ARM64 move needs "
                "Graviton container instances, not a Fargate runtimePlatform"
            )
        family = (task_definition.get("runtimePlatform") or {}).get("operatingSystemFamily")
        if family and family != "LINUX":
            return f"{name} runs {family}, which has no ARM64 on Fargate"
        return None

    def _plan_fargate(self, obs: ComputeObservation) -> Change | None:
        services = obs.inventory.services
        pending = [s for s in services if s.architecture != "ARM64"]
        if not pending:
            return None
        refusals = [
            r
            for s in pending
            if (r := self._fargate_refusal(s, obs.task_definitions[s.task_definition]))
        ]
        image_refusals, warnings = self._image_problems(obs)
        refusals += image_refusals
        if refusals:
            raise StepRefused("; ".join(refusals) + "; nothing was changed")
        after = self._empty_inventory(
            services=[
                s.model_copy(update={"architecture": "ARM64"}) if s in pending else s
                for s in services
            ]
        )
        actions = []
        for s in pending:
            family = obs.task_definitions[s.task_definition]["family"]
            actions += [
                f"ecs:RegisterTaskDefinition {family}: a copy of {s.task_definition} with "
                "cpuArchitecture ARM64 (reused if an identical ARM64 revision exists)",
                f"ecs:UpdateService {s.cluster}/{s.name} to it (forceNewDeployment)",
                f"wait until {s.cluster}/{s.name} runs only the new revision, "
                f"{s.desired} of {s.desired}",
            ]
        actions += [f"warning: {w}" for w in warnings]
        return self.change(
            summary=f"run {len(pending)} ECS service(s) on Fargate ARM64 (Graviton): "
            + ", ".join(f"{s.cluster}/{s.name} ({s.architecture})" for s in pending),
            actions=actions,
            cost_delta=self.ctx.cost_delta(obs.inventory, after),
            reversibility=Reversibility(
                restart_needed=True,
                rollback_possible=True,
                expected_disruption="rolling task replacement behind the ALB; no downtime expected",
            ),
            before={
                "target": FARGATE,
                "services": {
                    self._key(s.cluster, s.name): {
                        "cluster": s.cluster,
                        "service": s.name,
                        "task_definition": s.task_definition,
                        "architecture": s.architecture,
                        "desired": s.desired,
                    }
                    for s in pending
                },
            },
            desired={
                "target": FARGATE,
                "cpu_architecture": "ARM64",
                "unchecked_images": warnings,
            },
        )

    def _arm64_revisions(self, family: str, newer_than: int) -> list[str]:
        """ACTIVE revisions of `family` newer than `newer_than`, newest first."""
        pages = self.clients.ecs.get_paginator("list_task_definitions").paginate(
            familyPrefix=family, status="ACTIVE"
        )
        found = []
        for page in pages:
            for arn in page["taskDefinitionArns"]:
                name, _, revision = arn.rsplit("/", 1)[-1].rpartition(":")
                if name == family and int(revision) > newer_than:
                    found.append((int(revision), arn))
        return [arn for _, arn in sorted(found, reverse=True)]

    def _arm64_revision(self, source_arn: str) -> tuple[str, bool]:
        """The ARM64 twin of `source_arn`: an existing identical one, else a new registration.

        Looking first is what makes a re-run after a crash (registered, not yet rolled out)
        reuse the revision it registered rather than add another. Returns (arn, registered).
        """
        source = self._describe_task_definition(source_arn)
        spec = arm64_spec(source)
        for arn in self._arm64_revisions(source["family"], source["revision"]):
            if registrable(self._describe_task_definition(arn)) == spec:
                self._info("compute.revision_reused", resource=arn, source=source_arn)
                return arn, False
        tags = [t for t in source.get("tags", []) if not t["key"].startswith("aws:")]
        tags = [t for t in tags if t["key"] not in (CREATED_BY_TAG, ARM64_OF_TAG)]
        tags += [
            {"key": CREATED_BY_TAG, "value": self.id},
            {"key": ARM64_OF_TAG, "value": source_arn},
        ]
        arn = self.clients.ecs.register_task_definition(**spec, tags=tags)["taskDefinition"][
            "taskDefinitionArn"
        ]
        self._info("compute.revision_registered", resource=arn, source=source_arn)
        return arn, True

    def _apply_fargate(self, change: Change) -> dict[str, Any]:
        twins: dict[str, tuple[str, bool]] = {}
        after = {}
        for key, before in change.before["services"].items():
            source = before["task_definition"]
            if source not in twins:
                twins[source] = self._arm64_revision(source)
            arn, registered = twins[source]
            self._switch_service(before["cluster"], before["service"], arn)
            after[key] = {"task_definition": arn, "registered": registered}
        return {"target": FARGATE, "services": after}

    def _verify_fargate(self) -> None:
        for s in Discovery(self.ctx.config, self.clients).services():
            name = f"ECS service {s.cluster}/{s.name}"
            if s.architecture != "ARM64":
                raise VerificationFailed(
                    f"{name} runs {s.task_definition}, which is {s.architecture}, not ARM64"
                )
            if s.running != s.desired:
                raise VerificationFailed(f"{name} runs {s.running} of {s.desired} tasks")

    def _rollback_fargate(self, record: Record) -> None:
        """Back to the old revisions (wait stable), then deregister the ARM64 ones we made."""
        for before in record.before["services"].values():
            self._switch_service(before["cluster"], before["service"], before["task_definition"])
        old = {b["task_definition"] for b in record.before["services"].values()}
        made = {a["task_definition"] for a in record.after.get("services", {}).values()}
        for arn in sorted(made - old):
            td = self._describe_task_definition(arn)
            if td.get("status") == "ACTIVE" and self._ours(td.get("tags")):
                self.clients.ecs.deregister_task_definition(taskDefinition=arn)
                self._info("compute.revision_deregistered", resource=arn)

    def _verify_rollback_fargate(self, record: Record) -> None:
        for before in record.before["services"].values():
            key = self._key(before["cluster"], before["service"])
            svc = self._describe_service(before["cluster"], before["service"])
            if svc["taskDefinition"] != before["task_definition"]:
                raise VerificationFailed(
                    f"ECS service {key} runs {svc['taskDefinition']}, "
                    f"not {before['task_definition']}"
                )
            if svc["runningCount"] != svc["desiredCount"]:
                raise VerificationFailed(
                    f"ECS service {key} runs {svc['runningCount']} of {svc['desiredCount']} tasks"
                )

    # -- EC2 Auto Scaling group: reading ---------------------------------------------------------

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
        asg: dict[str, Any] | None,
        ec2_tg: dict[str, Any] | None,
        listeners: list[dict[str, Any]],
    ) -> bool:
        """The app already runs on the group: it exists, the ALB forwards to it, ECS is at 0."""
        if asg is None or ec2_tg is None:
            return False
        ecs_groups = {tg for s in services for tg in s.target_groups}
        targets = [forward_targets(listener["DefaultActions"]) for listener in listeners]
        return (
            any(t == {ec2_tg["TargetGroupArn"]} for t in targets)
            and not any(t & ecs_groups for t in targets)
            and all(s.desired == 0 for s in services)
        )

    def _observe_ec2(self) -> ComputeObservation:
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
        if self._ec2_done(inventory.services, asg, ec2_tg, listeners):
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
        if container.get("secrets"):
            refusals.append(
                f"container {container['name']} of ECS service {key} reads secrets, which the "
                "EC2 user data does not fetch; use the ecs-fargate-arm64 target"
            )
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
        # group's target group (a previous run switched it) was forwarding to the app's.
        restore: dict[str, list[dict[str, Any]]] = {}
        alb_arns = set()
        for listener in listeners:
            targets = forward_targets(listener["DefaultActions"])
            if targets == {app_tg["TargetGroupArn"]}:
                restore[listener["ListenerArn"]] = listener["DefaultActions"]
            elif ec2_tg is not None and targets == {ec2_tg["TargetGroupArn"]}:
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
                    for k in ("name", "image", "environment", "entryPoint", "command")
                    if k in container
                },
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

    # -- EC2 Auto Scaling group: planning --------------------------------------------------------

    def _plan_ec2(self, obs: ComputeObservation) -> Change | None:
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
            f"iam:CreateRole/CreateInstanceProfile {names['instance_profile']}: ECR pull only "
            "(reused if it exists)",
            f"ec2:CreateLaunchTemplate {names['launch_template']}: {targets.ec2_instance_type}, "
            f"{state['ami']} (ECS-optimized AL2023 arm64), user data runs "
            f"{state['container']['image']} on port {state['port']} (reused if it exists)",
            f"elbv2:CreateTargetGroup {names['target_group']}: target type instance "
            f"({app_tg['TargetGroupName']} is target type {app_tg.get('TargetType')!r}, which "
            "an Auto Scaling group cannot register instances in), same port and health check",
            f"autoscaling:CreateAutoScalingGroup {names['autoscaling_group']}: min "
            f"{targets.asg_min}, max {targets.asg_max}, desired {capacity}, public subnets "
            f"{', '.join(state['public_subnets'])}",
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

    def _ensure_instance_profile(self, role: str, profile: str) -> str:
        """An instance profile whose role may pull from ECR and nothing more."""
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
        script = user_data(desired["container"], desired["port"])
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
                "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
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
        health = self.clients.elbv2.describe_target_health(TargetGroupArn=target_group)
        healthy = {
            d["Target"]["Id"]
            for d in health["TargetHealthDescriptions"]
            if d["TargetHealth"]["State"] == "healthy"
        }
        return group, [
            i["InstanceId"]
            for i in group.get("Instances", [])
            if i["LifecycleState"] == "InService" and i["InstanceId"] in healthy
        ]

    def _apply_ec2(self, change: Change) -> dict[str, Any]:
        desired, names = change.desired, change.desired["names"]
        [service] = change.before["services"].values()
        security_group = self._ensure_security_group(names["security_group"], desired)
        profile = self._ensure_instance_profile(names["role"], names["instance_profile"])
        template = self._ensure_launch_template(
            names["launch_template"], desired, security_group, profile
        )
        target_group = self._ensure_target_group(names["target_group"], desired)
        self._ensure_asg(
            names["autoscaling_group"], template, target_group, desired, service["desired"]
        )
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
            "role": names["role"],
            "instance_profile": profile,
        }

    # -- EC2 Auto Scaling group: verifying and rolling back --------------------------------------

    def _verify_ec2(self) -> None:
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
            raise VerificationFailed(
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
            raise VerificationFailed(
                f"instances {unhealthy} of {group_name} are not healthy in {names['target_group']}"
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

    def _rollback_ec2(self, record: Record) -> None:
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
            for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
                iam.delete_role_policy(RoleName=role, PolicyName=policy)
            iam.delete_role(RoleName=role)
            self._info("compute.role_deleted", resource=role)

    def _verify_rollback_ec2(self, record: Record) -> None:
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
        names = record.change.desired["names"] if record.change else self.names()
        if self._describe_asg(names["autoscaling_group"]) is not None:
            raise VerificationFailed(
                f"Auto Scaling group {names['autoscaling_group']} still exists"
            )
