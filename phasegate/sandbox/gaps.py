"""The sandbox front's gap-fillers, in the order they are asked; each in its own module.

A gap-filler is `fill(service, action, params, environ) -> (status, content_type, body)` for
a request moto cannot answer the way AWS does, or None to let moto answer (it may first
rewrite a request moto would misread).
"""

from collections.abc import Callable
from typing import Any

from phasegate.sandbox import (
    asg_instance_groups,
    autoscaling_policies,
    budgets_tags,
    ecs_rebalancing,
    ecs_strategy,
    elasticache_members,
    elbv2_forwarding,
    elbv2_scheme,
    failover_gaps,
    launch_template_tags,
    phase3_gaps,
    rds_parameter_source,
)

Fill = Callable[[str, str, dict[str, list[str]], dict[str, Any]], tuple[str, str, bytes] | None]

GAP_FILLERS: list[Fill] = [
    elasticache_members.fill,
    ecs_rebalancing.fill,
    ecs_strategy.fill,
    elbv2_scheme.fill,
    elbv2_forwarding.fill,
    autoscaling_policies.fill,
    budgets_tags.fill,
    launch_template_tags.fill,
    rds_parameter_source.fill,
    asg_instance_groups.fill,
    phase3_gaps.fill,
    failover_gaps.fill,
]


def answer(
    service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]
) -> tuple[str, str, bytes] | None:
    """The first gap-filler's answer to the request, or None for moto to answer it."""
    for fill in GAP_FILLERS:
        found = fill(service, action, params, environ)
        if found is not None:
            return found
    return None
