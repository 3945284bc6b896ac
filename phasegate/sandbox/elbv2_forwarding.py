"""Sandbox gap-filler: a target group's `LoadBalancerArns` follow the listeners.

On AWS a target group is associated with a load balancer while a listener or rule of it
forwards to the group: DescribeTargetGroups lists the balancer in the group's LoadBalancerArns,
and DescribeTargetGroups(LoadBalancerArn=...) finds the group. moto (5.x) records the
association only when a listener or rule is created, never on ModifyListener or ModifyRule and
never drops it, so a listener moved to a new group (Terraform replacing a target group, or
compute.graviton's switch) leaves the new group unassociated and the balancer reported with
no target group at all. Here, before moto answers DescribeTargetGroups, every group's
association is recomputed from the listeners' and rules' forward actions; a balancer that
forwards to no group gets AWS's empty list (moto answers TargetGroupNotFound).
"""

from typing import Any

from phasegate.sandbox.latency import account_and_region

XMLNS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
NO_GROUPS = (
    f'<DescribeTargetGroupsResponse xmlns="{XMLNS}"><DescribeTargetGroupsResult>'
    "<TargetGroups/></DescribeTargetGroupsResult><ResponseMetadata>"
    "<RequestId>phasegate-sandbox</RequestId></ResponseMetadata></DescribeTargetGroupsResponse>"
).encode()


def _forwarded(actions: list[Any]) -> set[str]:
    arns: set[str] = set()
    for action in actions:
        if action.type != "forward":
            continue
        data = action.data
        if data.get("TargetGroupArn"):
            arns.add(data["TargetGroupArn"])
        for group in (data.get("ForwardConfig") or {}).get("TargetGroups", []):
            arns.add(group["TargetGroupArn"])
    return arns


def fill(
    service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]
) -> tuple[str, str, bytes] | None:
    """Recompute the groups' balancers from the forward actions; answers only a balancer
    (that exists) with no group."""
    if service != "elasticloadbalancing" or action != "DescribeTargetGroups":
        return None
    from moto.elbv2.models import elbv2_backends

    account, region = account_and_region(environ)
    backend = elbv2_backends[account][region]
    balancers: dict[str, list[str]] = {}
    for lb_arn, lb in backend.load_balancers.items():
        for listener in lb.listeners.values():
            forwarded = _forwarded(listener.default_actions)
            for rule in listener.rules.values():
                forwarded |= _forwarded(rule.actions)
            for tg_arn in forwarded:
                if lb_arn not in balancers.setdefault(tg_arn, []):
                    balancers[tg_arn].append(lb_arn)
    for tg_arn, group in backend.target_groups.items():
        group.load_balancer_arns = balancers.get(tg_arn, [])
    asked = params.get("LoadBalancerArn", [""])[0]
    if asked in backend.load_balancers and not any(asked in b for b in balancers.values()):
        return "200 OK", "text/xml", NO_GROUPS
    return None
