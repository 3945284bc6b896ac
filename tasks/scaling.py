"""`scaling.enable`: target-tracking autoscaling for the environment's compute.

Phase 1 leaves the service at a fixed size: two Fargate tasks (or the EC2 group's fixed
count), paid for around the clock and unable to absorb a burst. Phase 2 lets AWS size it:

- ECS (`ecs-fargate-arm64`): an Application Auto Scaling scalable target on the service's
  DesiredCount (`scaling.min_capacity`-`max_capacity`, default 2-6) with two target-tracking
  policies, ECSServiceAverageCPUUtilization and ALBRequestCountPerTarget, each with the
  config's scale-in and scale-out cooldowns;
- EC2 (`ec2-asg-graviton`): the Auto Scaling group's MinSize/MaxSize (`targets.asg_min`-
  `asg_max`, default 1-5, the bounds phase 1 created it with) with ASGAverageCPUUtilization
  and ALBRequestCountPerTarget policies, and group metrics collection
  (GroupInServiceInstances) so monitoring can alarm at max.
  EC2 Auto Scaling target tracking has no cooldowns; it waits `instance_warmup_seconds`.

The desired count is never lowered by the change itself: the plan refuses when the service
runs more than the configured maximum (registering would cut it to the maximum). Policies
have deterministic names (`ENV-cpu`, `ENV-requests`), so a re-run finds and updates them
instead of adding more. The Record keeps the scaling settings found before (the scalable
target's or group's bounds, metrics collection), which rollback restores after deleting the
policies; a scalable target that did not exist before is deregistered.
"""

from typing import Any

from phasegate.errors import AwsCallError
from phasegate.inventory import (
    AUTOSCALING_IAM_ACTIONS,
    LOAD_BALANCER_IAM_ACTIONS,
    SERVICE_IAM_ACTIONS,
    Discovery,
)
from phasegate.steps import (
    CREATED_BY_TAG,
    Change,
    Observation,
    Record,
    Reversibility,
    Step,
    StepRefused,
    VerificationFailed,
    diff_entry,
)
from tasks.compute_ec2 import forward_targets

ECS_DIMENSION = "ecs:service:DesiredCount"
GROUP_METRICS = ["GroupInServiceInstances", "GroupDesiredCapacity"]


class ScalingObservation(Observation):
    """The compute to scale and its scaling settings now, in the shape `desired` has."""

    kind: str  # "ecs" or "ec2"
    resource: str  # "service/CLUSTER/SERVICE" or the Auto Scaling group's name
    desired_count: int
    resource_label: str
    current: dict[str, Any]


def resource_label(load_balancer_arn: str, target_group_arn: str) -> str:
    """ALBRequestCountPerTarget's ResourceLabel: app/NAME/ID/targetgroup/NAME/ID."""
    lb = load_balancer_arn.split(":loadbalancer/", 1)[1]
    tg = target_group_arn.split(":", 5)[5]
    return f"{lb}/{tg}"


class ScalingEnable(Step):
    """Target tracking on CPU and requests per target, min/max from config."""

    id = "scaling.enable"
    phase = 2
    title = "Autoscaling: target tracking on CPU and ALB requests per target"
    iam_actions = (
        *SERVICE_IAM_ACTIONS,
        *AUTOSCALING_IAM_ACTIONS,
        *LOAD_BALANCER_IAM_ACTIONS,
        "elasticloadbalancing:DescribeListeners",
        "autoscaling:DescribePolicies",
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:PutScalingPolicy",
        "autoscaling:DeletePolicy",
        "autoscaling:EnableMetricsCollection",
        "autoscaling:DisableMetricsCollection",
        "application-autoscaling:DescribeScalableTargets",
        "application-autoscaling:DescribeScalingPolicies",
        "application-autoscaling:RegisterScalableTarget",
        "application-autoscaling:DeregisterScalableTarget",
        "application-autoscaling:PutScalingPolicy",
        "application-autoscaling:DeleteScalingPolicy",
        "application-autoscaling:TagResource",
        # The first ECS target of an account creates Application Auto Scaling's
        # service-linked role (AWSServiceRoleForApplicationAutoScaling_ECSService).
        "iam:CreateServiceLinkedRole",
    )

    @property
    def kind(self) -> str:
        return "ec2" if self.ctx.config.targets.compute == "ec2-asg-graviton" else "ecs"

    def policy_names(self) -> dict[str, str]:
        env = self.ctx.config.name
        return {"cpu": f"{env}-cpu", "requests": f"{env}-requests"}

    def target(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.ctx.config.scaling.model_dump()}

    def terraform_decisions(self) -> dict[str, Any]:
        """terraform/'s scaling module on, with the config's bounds and targets: the ECS
        service's task bounds and cooldowns, or the EC2 group's asg_min/asg_max and warmup."""
        cfg = self.ctx.config.scaling
        tracking = {
            "enable_autoscaling": True,
            "autoscaling_cpu_target_percent": cfg.cpu_target_percent,
            "autoscaling_requests_per_target": cfg.requests_per_target,
        }
        if self.kind == "ec2":
            targets = self.ctx.config.targets
            return {
                **tracking,
                "asg_min": targets.asg_min,
                "asg_max": targets.asg_max,
                "autoscaling_instance_warmup_seconds": cfg.instance_warmup_seconds,
            }
        return {
            **tracking,
            "autoscaling_min_capacity": cfg.min_capacity,
            "autoscaling_max_capacity": cfg.max_capacity,
            "autoscaling_scale_in_cooldown_seconds": cfg.scale_in_cooldown_seconds,
            "autoscaling_scale_out_cooldown_seconds": cfg.scale_out_cooldown_seconds,
        }

    # -- reading -------------------------------------------------------------------------

    @property
    def aas(self) -> Any:
        return self.clients.client("application-autoscaling")

    def _label(self, target_group_arn: str) -> str:
        """The ResourceLabel of the ALB that forwards to `target_group_arn`: the group's own
        LoadBalancerArns, else the environment's ALB whose listener forwards to it."""
        elbv2 = self.clients.elbv2
        group = elbv2.describe_target_groups(TargetGroupArns=[target_group_arn])
        arns = list(group["TargetGroups"][0].get("LoadBalancerArns") or [])
        for lb in [] if arns else Discovery(self.ctx.config, self.clients).load_balancers():
            listeners = elbv2.describe_listeners(LoadBalancerArn=lb.arn)["Listeners"]
            if any(target_group_arn in forward_targets(x["DefaultActions"]) for x in listeners):
                arns.append(lb.arn)
        if not arns:
            raise StepRefused(
                f"target group {target_group_arn} is behind no load balancer of "
                f"{self.ctx.config.name}; ALBRequestCountPerTarget needs one"
            )
        return resource_label(arns[0], target_group_arn)

    def _ecs_observation(self) -> ScalingObservation:
        services = [s for s in Discovery(self.ctx.config, self.clients).services()]
        if len(services) != 1:
            found = ", ".join(f"{s.cluster}/{s.name}" for s in services) or "none"
            raise StepRefused(
                f"{self.ctx.config.name}: {self.id} scales exactly one ECS service; found {found}"
            )
        service = services[0]
        if not service.target_groups:
            raise StepRefused(f"ECS service {service.name} is behind no target group")
        resource = f"service/{service.cluster}/{service.name}"
        return ScalingObservation(
            kind="ecs",
            resource=resource,
            desired_count=service.desired,
            resource_label=self._label(service.target_groups[0]),
            current=self._ecs_settings(resource),
        )

    def _ecs_settings(self, resource: str) -> dict[str, Any]:
        found = self.aas.describe_scalable_targets(
            ServiceNamespace="ecs", ResourceIds=[resource], ScalableDimension=ECS_DIMENSION
        )["ScalableTargets"]
        target = {"min": found[0]["MinCapacity"], "max": found[0]["MaxCapacity"]} if found else None
        policies = self.aas.describe_scaling_policies(
            ServiceNamespace="ecs", ResourceId=resource, ScalableDimension=ECS_DIMENSION
        )["ScalingPolicies"]
        return {"target": target, "policies": self._ours(policies, "PolicyName")}

    def _ec2_observation(self) -> ScalingObservation:
        groups = Discovery(self.ctx.config, self.clients).autoscaling_groups()
        if len(groups) != 1:
            found = ", ".join(g.name for g in groups) or "none"
            raise StepRefused(
                f"{self.ctx.config.name}: {self.id} scales exactly one Auto Scaling group "
                f"(phase 1's compute.graviton makes it); found {found}"
            )
        group = groups[0]
        if not group.target_groups:
            raise StepRefused(f"Auto Scaling group {group.name} is in no target group")
        return ScalingObservation(
            kind="ec2",
            resource=group.name,
            desired_count=group.desired,
            resource_label=self._label(group.target_groups[0]),
            current=self._ec2_settings(group.name),
        )

    def _ec2_settings(self, name: str) -> dict[str, Any]:
        autoscaling = self.clients.autoscaling
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
            "AutoScalingGroups"
        ][0]
        policies = autoscaling.describe_policies(
            AutoScalingGroupName=name, PolicyNames=list(self.policy_names().values())
        )["ScalingPolicies"]
        metrics = sorted(
            m["Metric"] for m in group.get("EnabledMetrics", []) if m["Metric"] in GROUP_METRICS
        )
        return {
            "target": {"min": group["MinSize"], "max": group["MaxSize"]},
            "metrics": metrics,
            "policies": self._ours(policies, "PolicyName"),
        }

    def _ours(self, policies: list[dict[str, Any]], key: str) -> dict[str, Any]:
        """Our policies (by name) as {name: tracking settings}, comparable with `desired`."""
        names = set(self.policy_names().values())
        found = {}
        for policy in policies:
            if policy[key] not in names:
                continue
            config = (
                policy.get("TargetTrackingScalingPolicyConfiguration")
                or policy.get("TargetTrackingConfiguration")
                or {}
            )
            spec = config.get("PredefinedMetricSpecification", {})
            entry = {
                "metric": spec.get("PredefinedMetricType"),
                "target_value": float(config.get("TargetValue", 0)),
            }
            if spec.get("ResourceLabel"):
                entry["resource_label"] = spec["ResourceLabel"]
            for field, name in (("ScaleInCooldown", "scale_in"), ("ScaleOutCooldown", "scale_out")):
                if field in config:
                    entry[name] = config[field]
            if "EstimatedInstanceWarmup" in policy:
                entry["warmup"] = policy["EstimatedInstanceWarmup"]
            found[policy[key]] = entry
        return found

    def observe(self) -> ScalingObservation:
        return self._ec2_observation() if self.kind == "ec2" else self._ecs_observation()

    # -- planning ------------------------------------------------------------------------

    def desired(self, obs: ScalingObservation) -> dict[str, Any]:
        """The scaling settings the config asks for, in the shape `observe` reads."""
        cfg = self.ctx.config.scaling
        names = self.policy_names()
        if obs.kind == "ecs":
            cooldowns = {
                "scale_in": cfg.scale_in_cooldown_seconds,
                "scale_out": cfg.scale_out_cooldown_seconds,
            }
            return {
                "target": {"min": cfg.min_capacity, "max": cfg.max_capacity},
                "policies": {
                    names["cpu"]: {
                        "metric": "ECSServiceAverageCPUUtilization",
                        "target_value": float(cfg.cpu_target_percent),
                        **cooldowns,
                    },
                    names["requests"]: {
                        "metric": "ALBRequestCountPerTarget",
                        "target_value": float(cfg.requests_per_target),
                        "resource_label": obs.resource_label,
                        **cooldowns,
                    },
                },
            }
        warmup = {"warmup": cfg.instance_warmup_seconds}
        targets = self.ctx.config.targets
        return {
            "target": {"min": targets.asg_min, "max": targets.asg_max},
            "metrics": sorted(GROUP_METRICS),
            "policies": {
                names["cpu"]: {
                    "metric": "ASGAverageCPUUtilization",
                    "target_value": float(cfg.cpu_target_percent),
                    **warmup,
                },
                names["requests"]: {
                    "metric": "ALBRequestCountPerTarget",
                    "target_value": float(cfg.requests_per_target),
                    "resource_label": obs.resource_label,
                    **warmup,
                },
            },
        }

    def plan(self, obs: Observation) -> Change | None:
        assert isinstance(obs, ScalingObservation)
        desired = self.desired(obs)
        if obs.current == desired:
            return None
        bounds = desired["target"]
        if obs.desired_count > bounds["max"]:
            field = "targets.asg_max" if obs.kind == "ec2" else "scaling.max_capacity"
            raise StepRefused(
                f"{self.ctx.config.name}: {self.id}: {obs.resource} runs {obs.desired_count}, "
                f"above {field} ({bounds['max']}); autoscaling would lower it at once. "
                f"Raise {field} to at least {obs.desired_count}"
            )
        prices = self.ctx.prices
        alarm = prices.monitoring.alarm_month.usd if prices else 0.0
        # Each target-tracking policy makes two CloudWatch alarms (high and low), billed.
        delta = round(alarm * 2 * (len(desired["policies"]) - len(obs.current["policies"])), 2)
        what = "ECS service" if obs.kind == "ecs" else "Auto Scaling group"
        actions = (
            [
                f"application-autoscaling:RegisterScalableTarget {obs.resource} "
                f"min {bounds['min']} max {bounds['max']}"
            ]
            if obs.kind == "ecs"
            else [
                f"autoscaling:UpdateAutoScalingGroup {obs.resource} "
                f"min {bounds['min']} max {bounds['max']}",
                f"autoscaling:EnableMetricsCollection {obs.resource} {', '.join(GROUP_METRICS)}",
            ]
        )
        actions += [
            f"{'application-autoscaling' if obs.kind == 'ecs' else 'autoscaling'}:PutScalingPolicy "
            f"{name} ({policy['metric']} {policy['target_value']:g})"
            for name, policy in desired["policies"].items()
        ]
        return self.change(
            f"target tracking for {what} {obs.resource}: {bounds['min']}-{bounds['max']}, "
            f"CPU {self.ctx.config.scaling.cpu_target_percent:g}%, "
            f"{self.ctx.config.scaling.requests_per_target:g} requests per target",
            actions,
            delta,
            reversibility=Reversibility(
                restart_needed=False,
                rollback_possible=True,
                expected_disruption="none; capacity then follows load within the bounds",
            ),
            before={"kind": obs.kind, "resource": obs.resource, **obs.current},
            desired={"kind": obs.kind, "resource": obs.resource, **desired},
        )

    # -- changing ------------------------------------------------------------------------

    def _tags(self) -> dict[str, str]:
        return {**self.ctx.config.discovery.tags, CREATED_BY_TAG: self.id}

    def apply(self, change: Change) -> dict[str, Any]:
        desired = change.desired
        resource = desired["resource"]
        if desired["kind"] == "ecs":
            self._apply_ecs(resource, desired, change.before.get("target") is None)
        else:
            self._apply_ec2(resource, desired)
        return desired

    def _apply_ecs(self, resource: str, desired: dict[str, Any], new: bool) -> None:
        bounds = desired["target"]
        register: dict[str, Any] = {
            "ServiceNamespace": "ecs",
            "ResourceId": resource,
            "ScalableDimension": ECS_DIMENSION,
            "MinCapacity": bounds["min"],
            "MaxCapacity": bounds["max"],
        }
        if new:  # tags go on at creation; an existing target keeps its own
            register["Tags"] = self._tags()
        self.aas.register_scalable_target(**register)
        self.progress(target=bounds)
        for name, policy in desired["policies"].items():
            spec: dict[str, Any] = {"PredefinedMetricType": policy["metric"]}
            if "resource_label" in policy:
                spec["ResourceLabel"] = policy["resource_label"]
            self.aas.put_scaling_policy(
                PolicyName=name,
                ServiceNamespace="ecs",
                ResourceId=resource,
                ScalableDimension=ECS_DIMENSION,
                PolicyType="TargetTrackingScaling",
                TargetTrackingScalingPolicyConfiguration={
                    "TargetValue": policy["target_value"],
                    "PredefinedMetricSpecification": spec,
                    "ScaleInCooldown": policy["scale_in"],
                    "ScaleOutCooldown": policy["scale_out"],
                },
            )
            self.progress(policies={name: policy})

    def _apply_ec2(self, name: str, desired: dict[str, Any]) -> None:
        autoscaling = self.clients.autoscaling
        bounds = desired["target"]
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=bounds["min"], MaxSize=bounds["max"]
        )
        self.progress(target=bounds)
        autoscaling.enable_metrics_collection(
            AutoScalingGroupName=name, Granularity="1Minute", Metrics=GROUP_METRICS
        )
        self.progress(metrics=desired["metrics"])
        for policy_name, policy in desired["policies"].items():
            spec: dict[str, Any] = {"PredefinedMetricType": policy["metric"]}
            if "resource_label" in policy:
                spec["ResourceLabel"] = policy["resource_label"]
            autoscaling.put_scaling_policy(
                AutoScalingGroupName=name,
                PolicyName=policy_name,
                PolicyType="TargetTrackingScaling",
                EstimatedInstanceWarmup=policy["warmup"],
                TargetTrackingConfiguration={
                    "TargetValue": policy["target_value"],
                    "PredefinedMetricSpecification": spec,
                },
            )
            self.progress(policies={policy_name: policy})

    # -- proving -------------------------------------------------------------------------

    def _settings(self, kind: str, resource: str) -> dict[str, Any]:
        return self._ec2_settings(resource) if kind == "ec2" else self._ecs_settings(resource)

    def verify(self, record: Record) -> None:
        """AWS shows the recorded bounds and policies (read back from the APIs)."""
        if record.change is None:
            obs = self.observe()
            expected = {"kind": obs.kind, "resource": obs.resource, **self.desired(obs)}
        else:
            expected = record.change.desired
        found = self._settings(expected["kind"], expected["resource"])
        diff = {
            f"{expected['resource']}.{field}": diff_entry(expected.get(field), found.get(field))
            for field in ("target", "metrics", "policies")
            if field in expected and expected[field] != found.get(field)
        }
        if diff:
            raise VerificationFailed.of(f"{self.ctx.config.name}: {self.id}", diff)

    def rollback(self, record: Record) -> None:
        """Delete our policies, then restore the bounds (or deregister a target we made)."""
        before = record.before or (record.change.before if record.change else {})
        if not before:
            return
        kind, resource = before["kind"], before["resource"]
        made = set(record.after.get("policies", {})) | set(
            (record.change.desired if record.change else {}).get("policies", {})
        )
        for name in sorted(made - set(before.get("policies", {}))):
            self._delete_policy(kind, resource, name)
        if kind == "ecs":
            self._restore_ecs(resource, before)
        else:
            self._restore_ec2(resource, before)

    def _delete_policy(self, kind: str, resource: str, name: str) -> None:
        try:
            if kind == "ecs":
                self.aas.delete_scaling_policy(
                    PolicyName=name,
                    ServiceNamespace="ecs",
                    ResourceId=resource,
                    ScalableDimension=ECS_DIMENSION,
                )
            else:
                self.clients.autoscaling.delete_policy(
                    AutoScalingGroupName=resource, PolicyName=name
                )
        except AwsCallError as exc:
            if exc.code not in ("ObjectNotFoundException", "ValidationError"):
                raise

    def _restore_ecs(self, resource: str, before: dict[str, Any]) -> None:
        bounds = before.get("target")
        if bounds is None:
            if self._ecs_settings(resource)["target"] is not None:
                self.aas.deregister_scalable_target(
                    ServiceNamespace="ecs", ResourceId=resource, ScalableDimension=ECS_DIMENSION
                )
            return
        self.aas.register_scalable_target(
            ServiceNamespace="ecs",
            ResourceId=resource,
            ScalableDimension=ECS_DIMENSION,
            MinCapacity=bounds["min"],
            MaxCapacity=bounds["max"],
        )

    def _restore_ec2(self, name: str, before: dict[str, Any]) -> None:
        autoscaling = self.clients.autoscaling
        bounds = before["target"]
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=bounds["min"], MaxSize=bounds["max"]
        )
        enabled = sorted(set(GROUP_METRICS) - set(before.get("metrics", [])))
        if enabled:
            autoscaling.disable_metrics_collection(AutoScalingGroupName=name, Metrics=enabled)

    def verify_rollback(self, record: Record) -> None:
        """AWS shows the settings from before again: bounds, metrics, no policy of ours."""
        before = record.before or (record.change.before if record.change else {})
        if not before:
            return
        found = self._settings(before["kind"], before["resource"])
        expected = {k: v for k, v in before.items() if k not in ("kind", "resource")}
        if found != expected:
            raise VerificationFailed(
                f"{self.ctx.config.name}: {self.id}: {before['resource']} shows {found} after "
                f"rollback, expected {expected}"
            )
