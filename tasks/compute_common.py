"""What both `compute.graviton` targets share: the target names, the arm64 image check, the
observation, and `ComputeTarget`, the base of each target's strategy class.

`tasks.compute.GravitonCompute` is the Step; it hands every verb to the strategy of the
configured target, `FargateArm64` (tasks.compute_fargate) or `Ec2AutoScalingGraviton`
(tasks.compute_ec2). This module imports neither of them, nor tasks.compute.
"""

import json
import re
from typing import Any

from pydantic import BaseModel

from phasegate.aws import AwsClients
from phasegate.errors import AwsCallError
from phasegate.inventory import Inventory
from phasegate.steps import (
    CREATED_BY_TAG,
    Change,
    Observation,
    Record,
    Step,
    StepContext,
    VerificationFailed,
)

FARGATE = "ecs-fargate-arm64"
EC2 = "ec2-asg-graviton"


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


class ComputeObservation(Observation):
    """What the step read: the services, their task definitions and images, and (EC2) the ALB
    wiring and the resources a previous run may have made."""

    target: str
    inventory: Inventory
    task_definitions: dict[str, dict[str, Any]] = {}
    images: list[ImageCheck] = []
    refusals: list[str] = []
    ec2: dict[str, Any] = {}


class ComputeTarget:
    """One target of the step: the same verbs as a Step, run on behalf of `step`.

    Holds the helpers both targets use (logging, ECS reads, the image check); each target's
    own logic lives in its subclass.
    """

    def __init__(self, step: Step) -> None:
        self.step = step

    @property
    def ctx(self) -> StepContext:
        return self.step.ctx

    @property
    def clients(self) -> AwsClients:
        return self.step.clients

    @property
    def id(self) -> str:
        return self.step.id

    @property
    def log(self) -> Any:
        return self.step.log

    @property
    def env(self) -> str:
        return self.ctx.config.name

    def change(self, summary: str, actions: list[str], cost_delta: float, **kw: Any) -> Change:
        return self.step.change(summary, actions, cost_delta, **kw)

    def progress(self, **done: Any) -> None:
        self.step.progress(**done)

    # -- the verbs ---------------------------------------------------------------------------

    def observe(self) -> ComputeObservation:
        raise NotImplementedError

    def plan(self, obs: ComputeObservation) -> Change | None:
        raise NotImplementedError

    def apply(self, change: Change) -> dict[str, Any]:
        raise NotImplementedError

    def verify(self, record: Record) -> None:
        raise NotImplementedError

    def rollback(self, record: Record) -> None:
        raise NotImplementedError

    def verify_rollback(self, record: Record) -> None:
        raise NotImplementedError

    # -- small helpers -----------------------------------------------------------------------

    def _info(self, event: str, resource: str, **kw: Any) -> None:
        if self.log:
            self.log.info(event, resource=resource, **kw)

    def _warning(self, event: str, resource: str, **kw: Any) -> None:
        if self.log:
            self.log.warning(event, resource=resource, **kw)

    def _ours(self, tags: list[dict[str, str]] | None) -> bool:
        return any(
            t.get("Key", t.get("key")) == CREATED_BY_TAG
            and t.get("Value", t.get("value")) == self.id
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
