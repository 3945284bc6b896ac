"""The shapes spot.enable compares: a service's capacity provider strategy and an Auto Scaling
group's purchase settings, read from AWS answers and written into AWS requests.

Kept apart from tasks/spot.py so the step reads as what it does, and so observe, plan and
verify all normalize the same way (AWS omits `base` when it is 0, and describes a group's
launch template in one of two places).
"""

from typing import Any


def _item(provider: str, base: int, weight: int) -> dict[str, Any]:
    return {"capacityProvider": provider, "base": base, "weight": weight}


def strategy_of(service: dict[str, Any]) -> list[dict[str, Any]]:
    """A DescribeServices service's strategy, every item with its base and weight, by
    provider (the order means nothing to ECS, and Terraform sends a set in any order)."""
    items = [
        _item(i["capacityProvider"], int(i.get("base", 0)), int(i.get("weight", 0)))
        for i in service.get("capacityProviderStrategy") or []
    ]
    return sorted(items, key=lambda item: item["capacityProvider"])


def service_strategy(base: int, weight: int, spot_weight: int) -> list[dict[str, Any]]:
    """`base` tasks on FARGATE, the rest split weight:spot_weight with FARGATE_SPOT."""
    return [_item("FARGATE", base, weight), _item("FARGATE_SPOT", 0, spot_weight)]


def mixed_instances_policy(
    launch_template: dict[str, Any], instance_types: list[str], on_demand_base: int
) -> dict[str, Any]:
    """The MixedInstancesPolicy of UpdateAutoScalingGroup: `on_demand_base` on-demand, the
    rest Spot from the pools likeliest to last at the lowest price."""
    return {
        "LaunchTemplate": {
            "LaunchTemplateSpecification": launch_template,
            "Overrides": [{"InstanceType": t} for t in instance_types],
        },
        "InstancesDistribution": {
            "OnDemandBaseCapacity": on_demand_base,
            "OnDemandPercentageAboveBaseCapacity": 0,
            "SpotAllocationStrategy": "price-capacity-optimized",
        },
    }


def ec2_policy_of(policy: dict[str, Any] | None) -> dict[str, Any] | None:
    """A MixedInstancesPolicy as the few fields spot.enable sets, or None for none."""
    if not policy:
        return None
    distribution = policy.get("InstancesDistribution", {})
    return {
        "instance_types": [
            o["InstanceType"] for o in policy.get("LaunchTemplate", {}).get("Overrides", [])
        ],
        "on_demand_base": int(distribution.get("OnDemandBaseCapacity", 0)),
        "on_demand_percent_above_base": int(
            distribution.get("OnDemandPercentageAboveBaseCapacity", 100)
        ),
        "spot_allocation": distribution.get("SpotAllocationStrategy", "price-capacity-optimized"),
    }


def group_state(group: dict[str, Any]) -> dict[str, Any]:
    """A DescribeAutoScalingGroups group's launch template, mixed policy and rebalancing."""
    policy = group.get("MixedInstancesPolicy")
    spec = (
        policy["LaunchTemplate"]["LaunchTemplateSpecification"]
        if policy
        else group.get("LaunchTemplate", {})
    )
    # AWS answers with both the id and the name, and refuses a request naming both.
    named_by = "LaunchTemplateId" if "LaunchTemplateId" in spec else "LaunchTemplateName"
    template = {k: spec[k] for k in (named_by, "Version") if k in spec}
    return {
        "name": group["AutoScalingGroupName"],
        "launch_template": template,
        "policy": ec2_policy_of(policy),
        "capacity_rebalance": bool(group.get("CapacityRebalance", False)),
    }
