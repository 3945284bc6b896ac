"""`compute.graviton` on ``ecs-fargate-arm64``: each ECS service to an ARM64 task definition.

A new task definition revision of each ECS service, identical to the current one but for
``runtimePlatform.cpuArchitecture = ARM64``, rolled out behind the ALB by ECS (new tasks up and
healthy before old ones stop), so no downtime is expected. The ARM64 revision is found again
on a re-run by comparing the family's newer revisions with the current one; rollback switches
the services back and deregisters only the revisions this step registered.
"""

from typing import Any

from phasegate.inventory import Discovery, EcsService
from phasegate.steps import (
    Change,
    Record,
    Reversibility,
    Settling,
    StepRefused,
    VerificationFailed,
    diff_entry,
)
from tasks.compute_common import CREATED_BY_TAG, FARGATE, ComputeObservation, ComputeTarget

# On an ARM64 revision: the revision it was copied from, for audit.
ARM64_OF_TAG = "phasegate:arm64-of"

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


class FargateArm64(ComputeTarget):
    """Run every ECS service on Fargate ARM64 (Graviton)."""

    def observe(self) -> ComputeObservation:
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

    def plan(self, obs: ComputeObservation) -> Change | None:
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

    def apply(self, change: Change) -> dict[str, Any]:
        twins: dict[str, tuple[str, bool]] = {}
        after = {}
        for key, before in change.before["services"].items():
            source = before["task_definition"]
            if source not in twins:
                twins[source] = self._arm64_revision(source)
            arn, registered = twins[source]
            after[key] = {"task_definition": arn, "registered": registered}
            self.progress(services={key: after[key]})  # a killed run's rollback finds it
            self._switch_service(before["cluster"], before["service"], arn)
        return {"target": FARGATE, "services": after}

    def verify(self, record: Record) -> None:
        """Drifted when a service runs a non-ARM64 revision; settling while its tasks are
        being replaced (running != desired)."""
        diff, busy = {}, []
        for s in Discovery(self.ctx.config, self.clients).services():
            name = f"{s.cluster}/{s.name}"
            if s.architecture != "ARM64":
                diff[f"service.{name}.cpu_architecture"] = diff_entry(
                    "ARM64", f"{s.architecture} ({s.task_definition})"
                )
            elif s.running != s.desired:
                busy.append(f"ECS service {name} runs {s.running} of {s.desired} tasks")
        if diff:
            raise VerificationFailed.of(f"{self.env}: {self.id}", diff)
        if busy:
            raise Settling(f"{self.env}: {self.id}: " + "; ".join(busy))

    def rollback(self, record: Record) -> None:
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

    def verify_rollback(self, record: Record) -> None:
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
            kind="ecs_deploy",
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
