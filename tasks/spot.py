"""`spot.enable`: Spot capacity for the services the config marks non-critical.

Spot capacity costs a fraction of on-demand but is reclaimed with two minutes' warning, so it
is only for a service that tolerates losing tasks: `services: {NAME: {critical: false,
spot: true}}` (the config refuses spot on a critical service). Some capacity always stays
on-demand, so a reclaim of every Spot task still leaves the service answering:

- ECS (`ecs-fargate-arm64`): the cluster's capacity providers gain FARGATE and FARGATE_SPOT,
  and the service gets the strategy FARGATE (base `spot.fargate_base`, weight
  `fargate_weight`) + FARGATE_SPOT (weight `fargate_spot_weight`), with a new deployment
  forced (a strategy alone starts none) and waited for. ARM64 tasks need platform 1.4.0 or
  later on FARGATE_SPOT; a service pinned older is a blocker.
- EC2 (`ec2-asg-graviton`): the Auto Scaling group gets a MixedInstancesPolicy: its launch
  template, `on_demand_base` on-demand instances, the rest Spot, price-capacity-optimized
  over several same-size Graviton types, and capacity rebalancing (a replacement is launched
  when AWS signals a reclaim is likely, before the instance goes).

The cost delta is an estimate: FARGATE_SPOT's rates, or the on-demand price less the price
table's Spot discount, each named with its date. Rollback puts the service back on its launch
type (or its old strategy) with a new deployment, removes the providers the step added, or
puts the group back on its launch template alone.
"""

from typing import Any

from phasegate.config_phase3 import SAME_SIZE_GRAVITON
from phasegate.inventory import DISCOVERY_IAM_ACTIONS, Discovery, EcsService
from phasegate.steps import (
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
from tasks.spot_shapes import (
    ec2_policy_of,
    group_state,
    mixed_instances_policy,
    service_strategy,
    strategy_of,
)

SPOT_PROVIDERS = ["FARGATE", "FARGATE_SPOT"]
ARM64_SPOT_PLATFORM = (1, 4, 0)


class SpotObservation(Observation):
    """The marked compute and its capacity settings now, in the shape `desired` has."""

    kind: str  # "ecs" or "ec2"
    current: dict[str, Any]
    monthly_on_demand: float = 0.0
    blockers: list[str] = []


class SpotEnable(Step):
    """Spot capacity with an on-demand base for services marked non-critical."""

    id = "spot.enable"
    phase = 3
    title = "Spot capacity (FARGATE_SPOT or a mixed-instances group) for non-critical services"
    iam_actions = (
        *DISCOVERY_IAM_ACTIONS,  # the cost delta prices the whole inventory
        "ecs:PutClusterCapacityProviders",
        "ecs:UpdateService",
        "autoscaling:UpdateAutoScalingGroup",
        "ec2:DescribeLaunchTemplateVersions",
        # A mixed-instances group launches Spot instances through EC2's service-linked role.
        "iam:CreateServiceLinkedRole",
    )

    @property
    def kind(self) -> str:
        return "ec2" if self.ctx.config.targets.compute == "ec2-asg-graviton" else "ecs"

    # -- through Terraform ---------------------------------------------------------------

    def terraform_decisions(self) -> dict[str, Any]:
        """Spot on, with terraform/'s compute_ecs strategy base and weights, or compute_ec2's
        mixed-instances on-demand base and instance types."""
        if not self.marked():
            return {}
        spot = self.ctx.config.spot
        if self.kind == "ec2":
            return {
                "enable_spot": True,
                "spot_on_demand_base": spot.on_demand_base,
                "spot_instance_types": self.instance_types(),
            }
        return {
            "enable_spot": True,
            "spot_fargate_base": spot.fargate_base,
            "spot_fargate_weight": spot.fargate_weight,
            "spot_fargate_spot_weight": spot.fargate_spot_weight,
        }

    def terraform_blockers(self, change: Change) -> list[str]:
        """A service on a launch type: Terraform cannot give it a strategy in place (the
        provider replaces the service: it is deleted, an outage), which UpdateService can."""
        return [
            f"ECS service {key} runs on a launch type, not a capacity provider strategy: "
            "Terraform would replace it (delete, then create: an outage) to give it one; give "
            "the stack's service a capacity_provider_strategy of FARGATE first (terraform/'s "
            "compute_ecs does), apply that with a new deployment, then run spot.enable"
            for key, strategy in (change.before or {}).get("services", {}).items()
            if not strategy
        ]

    def marked(self) -> list[str]:
        return sorted(n for n, m in self.ctx.config.services.items() if m.spot)

    def instance_types(self) -> list[str]:
        """The Spot group's types: `spot.instance_types`, else phase 1's type and its peers."""
        chosen = self.ctx.config.spot.instance_types
        if chosen:
            return chosen
        phase1 = self.ctx.config.targets.ec2_instance_type
        if phase1 not in SAME_SIZE_GRAVITON:
            raise StepRefused(
                f"{self.ctx.config.name}: {self.id}: no same-size Graviton types known for "
                f"targets.ec2_instance_type {phase1}; set spot.instance_types"
            )
        return SAME_SIZE_GRAVITON[phase1]

    def target(self) -> dict[str, Any]:
        spot = self.ctx.config.spot.model_dump()
        if self.kind == "ec2":
            spot["instance_types"] = self.instance_types() if self.marked() else []
        return {"kind": self.kind, "services": self.marked(), **spot}

    # -- reading -------------------------------------------------------------------------

    def _services(self, discovered: list[EcsService] | None = None) -> list[EcsService]:
        if discovered is None:
            discovered = Discovery(self.ctx.config, self.clients).services()
        found = {s.name: s for s in discovered}
        missing = [n for n in self.marked() if n not in found]
        if missing:
            raise StepRefused(
                f"{self.ctx.config.name}: {self.id}: services.{missing[0]} is marked spot: true, "
                f"but no ECS service {missing[0]} carries the environment's discovery tags"
            )
        return [found[n] for n in self.marked()]

    def _describe(self, cluster: str, name: str) -> dict[str, Any]:
        return self.clients.ecs.describe_services(cluster=cluster, services=[name])["services"][0]

    def _providers(self, cluster: str) -> list[str]:
        described = self.clients.ecs.describe_clusters(clusters=[cluster])["clusters"][0]
        return sorted(described.get("capacityProviders") or [])

    def observe(self) -> SpotObservation:
        if not self.marked():
            return SpotObservation(kind=self.kind, current={})
        return self._ec2_observation() if self.kind == "ec2" else self._ecs_observation()

    def _ecs_observation(self) -> SpotObservation:
        current: dict[str, Any] = {"clusters": {}, "services": {}}
        blockers = []
        for service in self._services():
            key = f"{service.cluster}/{service.name}"
            described = self._describe(service.cluster, service.name)
            current["clusters"][service.cluster] = self._providers(service.cluster)
            current["services"][key] = strategy_of(described)
            version = described.get("platformVersion") or "LATEST"
            if service.architecture == "ARM64" and version != "LATEST":
                numbers = tuple(int(p) for p in version.split(".") if p.isdigit())
                if numbers < ARM64_SPOT_PLATFORM:
                    blockers.append(
                        f"ECS service {key} runs ARM64 tasks on platform {version}; "
                        "FARGATE_SPOT needs 1.4.0 or later for ARM64"
                    )
        return SpotObservation(kind="ecs", current=current, blockers=blockers)

    def _group(self) -> dict[str, Any]:
        groups = Discovery(self.ctx.config, self.clients).autoscaling_groups()
        if len(groups) != 1:
            found = ", ".join(g.name for g in groups) or "none"
            raise StepRefused(
                f"{self.ctx.config.name}: {self.id} puts exactly one Auto Scaling group on Spot "
                f"(phase 1's compute.graviton makes it); found {found}"
            )
        return self.clients.autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[groups[0].name]
        )["AutoScalingGroups"][0]

    def _ec2_observation(self) -> SpotObservation:
        discovered = Discovery(self.ctx.config, self.clients).services()
        if discovered:
            # The marked service must exist: its app runs on the group. A stack that deleted
            # the service when the group took over (terraform/'s compute_ec2) has no name left
            # to check.
            self._services(discovered)
        group = self._group()
        return SpotObservation(kind="ec2", current=group_state(group))

    # -- planning ------------------------------------------------------------------------

    def desired(self, obs: SpotObservation) -> dict[str, Any]:
        spot = self.ctx.config.spot
        if obs.kind == "ecs":
            return {
                "clusters": {
                    c: sorted(set(p) | set(SPOT_PROVIDERS))
                    for c, p in obs.current["clusters"].items()
                },
                "services": dict.fromkeys(
                    obs.current["services"],
                    service_strategy(
                        spot.fargate_base, spot.fargate_weight, spot.fargate_spot_weight
                    ),
                ),
            }
        return {
            **obs.current,
            "policy": ec2_policy_of(
                mixed_instances_policy(
                    obs.current["launch_template"], self.instance_types(), spot.on_demand_base
                )
            ),
            "capacity_rebalance": True,
        }

    def _delta(self, obs: SpotObservation, desired: dict[str, Any]) -> tuple[float, str]:
        """The monthly delta and how it was estimated (the rates or discount, with the date)."""
        prices = self.ctx.prices
        if prices is None:
            return 0.0, "no price table"
        inventory = self.ctx.inventory()
        if obs.kind == "ecs":
            after = inventory.model_copy(deep=True)
            for service in after.services:
                key = f"{service.cluster}/{service.name}"
                if key in desired["services"]:
                    service.capacity_provider_strategy = desired["services"][key]
            basis = f"FARGATE_SPOT rates of the price table as of {prices.as_of}"
            return self.ctx.cost_delta(inventory, after), f"estimate: {basis}"
        discount = prices.ec2_spot_discount
        group = next(g for g in inventory.autoscaling_groups if g.name == obs.current["name"])
        instance_type = group.instance_types[0] if group.instance_types else None
        hourly = prices.ec2_instance_hour.get(instance_type or "")
        on_spot = max(group.desired - self.ctx.config.spot.on_demand_base, 0)
        saving = on_spot * (hourly.usd if hourly else 0.0) * prices.hours_per_month
        basis = (
            f"estimate: Spot {discount.fraction:.0%} below on-demand "
            f"({discount.source}, as of {discount.as_of})"
        )
        return round(-saving * discount.fraction, 2), basis

    def plan(self, obs: Observation) -> Change | None:
        assert isinstance(obs, SpotObservation)
        if not obs.current:
            return None
        desired = self.desired(obs)
        if obs.current == desired:
            return None
        delta, basis = self._delta(obs, desired)
        spot = self.ctx.config.spot
        if obs.kind == "ecs":
            actions = [
                f"ecs:PutClusterCapacityProviders {c} {', '.join(p)}"
                for c, p in desired["clusters"].items()
                if p != obs.current["clusters"][c]
            ] + [
                f"ecs:UpdateService {key} capacityProviderStrategy FARGATE base "
                f"{spot.fargate_base} weight {spot.fargate_weight}, FARGATE_SPOT weight "
                f"{spot.fargate_spot_weight}, forceNewDeployment"
                for key in desired["services"]
            ]
            what = ", ".join(desired["services"])
            summary = (
                f"FARGATE_SPOT for {what}: {spot.fargate_base} task(s) always on FARGATE, the "
                f"rest {spot.fargate_weight}:{spot.fargate_spot_weight} FARGATE:FARGATE_SPOT "
                f"({basis})"
            )
            disruption = "rolling task replacement (a new deployment)"
        else:
            types = ", ".join(self.instance_types())
            actions = [
                f"autoscaling:UpdateAutoScalingGroup {obs.current['name']} MixedInstancesPolicy "
                f"(on-demand base {spot.on_demand_base}, rest Spot price-capacity-optimized "
                f"over {types}), CapacityRebalance"
            ]
            summary = (
                f"Spot for Auto Scaling group {obs.current['name']}: {spot.on_demand_base} "
                f"on-demand, the rest Spot over {types} ({basis})"
            )
            disruption = "none at once; instances launched from now on may be Spot"
        return self.change(
            summary,
            actions,
            delta,
            reversibility=Reversibility(
                restart_needed=obs.kind == "ecs",
                rollback_possible=True,
                expected_disruption=disruption,
            ),
            before={"kind": obs.kind, **obs.current},
            desired={"kind": obs.kind, **desired},
            blockers=obs.blockers,
        )

    # -- changing ------------------------------------------------------------------------

    def apply(self, change: Change) -> dict[str, Any]:
        desired = change.desired
        if desired["kind"] == "ecs":
            self._apply_ecs(change.before, desired)
        else:
            self._put_group(desired)
            self.progress(policy=desired["policy"])
        return desired

    def _apply_ecs(self, before: dict[str, Any], desired: dict[str, Any]) -> None:
        ecs = self.clients.ecs
        for cluster, providers in desired["clusters"].items():
            if providers != before["clusters"][cluster]:
                described = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
                ecs.put_cluster_capacity_providers(
                    cluster=cluster,
                    capacityProviders=providers,
                    defaultCapacityProviderStrategy=described.get(
                        "defaultCapacityProviderStrategy", []
                    ),
                )
            self.progress(clusters={cluster: providers})
        for key, strategy in desired["services"].items():
            cluster, name = key.split("/", 1)
            if strategy_of(self._describe(cluster, name)) != strategy:
                ecs.update_service(
                    cluster=cluster,
                    service=name,
                    capacityProviderStrategy=strategy,
                    forceNewDeployment=True,
                )
            self.progress(services={key: strategy})
            self._wait_deployed(cluster, name)

    def _wait_deployed(self, cluster: str, name: str) -> None:
        self.ctx.wait(
            f"ECS service {cluster}/{name} deployment",
            lambda: self._describe(cluster, name),
            lambda s: (
                len(s["deployments"]) == 1
                and s["deployments"][0].get("rolloutState", "COMPLETED") == "COMPLETED"
            ),
            kind="ecs_deploy",
        )

    def _put_group(self, state: dict[str, Any]) -> None:
        """Put the group on the recorded policy, or on its launch template alone."""
        params: dict[str, Any] = {
            "AutoScalingGroupName": state["name"],
            "CapacityRebalance": state["capacity_rebalance"],
        }
        if state["policy"] is None:
            params["LaunchTemplate"] = state["launch_template"]
        else:
            params["MixedInstancesPolicy"] = mixed_instances_policy(
                state["launch_template"],
                state["policy"]["instance_types"],
                state["policy"]["on_demand_base"],
            )
        self.clients.autoscaling.update_auto_scaling_group(**params)

    # -- proving -------------------------------------------------------------------------

    def _found(self, expected: dict[str, Any]) -> dict[str, Any]:
        if expected["kind"] == "ec2":
            group = self.clients.autoscaling.describe_auto_scaling_groups(
                AutoScalingGroupNames=[expected["name"]]
            )["AutoScalingGroups"][0]
            return {"kind": "ec2", **group_state(group)}
        services = {}
        for key in expected["services"]:
            described = self._describe(*key.split("/", 1))
            if len(described["deployments"]) > 1:
                raise Settling(f"ECS service {key}: a deployment is in progress")
            services[key] = strategy_of(described)
        clusters = {c: self._providers(c) for c in expected["clusters"]}
        return {"kind": "ecs", "clusters": clusters, "services": services}

    def verify(self, record: Record) -> None:
        """AWS shows the recorded strategy and providers (or the group's policy)."""
        if record.change is None:
            obs = self.observe()
            if not obs.current:
                return
            expected = {"kind": obs.kind, **self.desired(obs)}
        else:
            expected = record.change.desired
        found = self._found(expected)
        diff = {
            f"{self.id}.{field}": diff_entry(expected[field], found.get(field))
            for field in expected
            if expected[field] != found.get(field)
        }
        if diff:
            raise VerificationFailed.of(f"{self.ctx.config.name}: {self.id}", diff)

    def rollback(self, record: Record) -> None:
        """Back to the launch type (or old strategy), then the old providers; or the group
        back on its launch template. Only what the Record says was changed is touched."""
        before = record.before or (record.change.before if record.change else {})
        if not before:
            return
        if before["kind"] == "ec2":
            self._put_group(before)
            return
        ecs = self.clients.ecs
        for key in record.after.get("services", {}):
            cluster, name = key.split("/", 1)
            if strategy_of(self._describe(cluster, name)) != before["services"][key]:
                # An empty list puts a service back on its launch type (UpdateService).
                ecs.update_service(
                    cluster=cluster,
                    service=name,
                    capacityProviderStrategy=before["services"][key],
                    forceNewDeployment=True,
                )
            self._wait_deployed(cluster, name)
        for cluster in record.after.get("clusters", {}):
            if self._providers(cluster) != before["clusters"][cluster]:
                described = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
                ecs.put_cluster_capacity_providers(
                    cluster=cluster,
                    capacityProviders=before["clusters"][cluster],
                    defaultCapacityProviderStrategy=described.get(
                        "defaultCapacityProviderStrategy", []
                    ),
                )

    def verify_rollback(self, record: Record) -> None:
        """AWS shows the strategy, providers or group settings from before again."""
        before = record.before or (record.change.before if record.change else {})
        if not before:
            return
        found = self._found(before)
        if found != before:
            raise VerificationFailed(
                f"{self.ctx.config.name}: {self.id}: shows {found} after rollback, "
                f"expected {before}"
            )
