"""What moto lacks for phase 3's steps, filled before moto answers.

- Auto Scaling UpdateAutoScalingGroup CapacityRebalance: moto's CreateAutoScalingGroup keeps
  it but UpdateAutoScalingGroup drops it, so a group switched to Spot by spot.enable would
  describe CapacityRebalance false for ever. On AWS the update sets it. The value asked for
  is put on moto's group, then moto answers the rest of the request as usual.

Product code never knows: it calls AWS's API and reads AWS's answers.
"""

from typing import Any

from phasegate.sandbox.latency import account_and_region


def fill(
    service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]
) -> tuple[str, str, bytes] | None:
    """Always None (moto answers); sets what moto would drop on the way."""
    if service == "autoscaling" and action == "UpdateAutoScalingGroup":
        rebalance = params.get("CapacityRebalance")
        if rebalance:
            from moto.autoscaling.models import autoscaling_backends

            account, region = account_and_region(environ)
            name = params.get("AutoScalingGroupName", [""])[0]
            group = autoscaling_backends[account][region].autoscaling_groups.get(name)
            if group is not None:
                group.capacity_rebalance = rebalance[0].lower() == "true"
    return None
