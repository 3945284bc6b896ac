"""Sandbox gap-filler: EC2 Auto Scaling policies read back as AWS returns them.

AWS's DescribePolicies gives every policy `Enabled` (what PutScalingPolicy asked, true when
it did not say) and a PredictiveScalingConfiguration only for a predictive policy. moto (5.x)
drops `Enabled` and stores an empty predictive configuration for every policy, so Terraform's
aws_autoscaling_policy read `enabled = false` and a predictive_scaling_configuration block
and planned a change on every run. Here the value PutScalingPolicy asked for is kept per
policy and put on moto's own policy objects, whose serializer then returns it.
"""

import threading
from typing import Any

from phasegate.sandbox.latency import account_and_region

_enabled: dict[tuple[str, str, str], bool] = {}  # (account, region, policy name) -> Enabled
_lock = threading.Lock()


def fill(service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]) -> None:
    """Remember PutScalingPolicy's Enabled; correct moto's policies before it describes
    them. Never answers itself."""
    if service != "autoscaling" or action not in ("PutScalingPolicy", "DescribePolicies"):
        return None
    from moto.autoscaling.models import autoscaling_backends

    account, region = account_and_region(environ)
    with _lock:
        if action == "PutScalingPolicy":
            name = params.get("PolicyName", [""])[0]
            asked = params.get("Enabled", ["true"])[0].lower() != "false"
            _enabled[(account, region, name)] = asked
            return None
        for policy in autoscaling_backends[account][region].policies.values():
            policy.enabled = _enabled.get((account, region, policy.name), True)
            if not policy.predictive_scaling_configuration:
                policy.predictive_scaling_configuration = None
    return None
