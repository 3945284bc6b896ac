"""Sandbox gap-filler: an Auto Scaling group's instances carry their launch template's groups.

On AWS an instance an Auto Scaling group launches from a launch template has the template's
security groups, whether the template names them in SecurityGroupIds or on its network
interface (NetworkInterfaces[0].Groups, the form a template with a public IP must use).
moto (5.x) reads only the template's SecurityGroups (names) and puts the instances in the
VPC's default group, so the ALB's health checks (phasegate.sandbox.target_reachability)
judged them by the default group and found them unreachable. Here, before moto answers a
request that shows instances or their health, each group's instances get the template's
groups.
"""

from typing import Any

from phasegate.sandbox.latency import account_and_region

SHOWS_INSTANCES = {
    ("ec2", "DescribeInstances"),
    ("ec2", "DescribeNetworkInterfaces"),
    ("elasticloadbalancing", "DescribeTargetHealth"),
}


def _template_group_ids(data: dict[str, Any]) -> list[str]:
    ids = list(data.get("SecurityGroupIds") or [])
    for interface in data.get("NetworkInterfaces") or []:
        ids += [g for g in interface.get("Groups") or [] if g not in ids]
    return ids


def fill(service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]) -> None:
    """Put each group's instances in its launch template's security groups; never answers."""
    if (service, action) not in SHOWS_INSTANCES:
        return None
    from moto.autoscaling.models import autoscaling_backends
    from moto.ec2.models import ec2_backends

    account, region = account_and_region(environ)
    ec2 = ec2_backends[account][region]
    for group in autoscaling_backends[account][region].autoscaling_groups.values():
        template = group.ec2_launch_template
        if template is None:
            continue
        data = template.get_version(group.launch_template_version).data
        wanted = [ec2.get_security_group_from_id(i) for i in _template_group_ids(data)]
        wanted = [g for g in wanted if g is not None]
        if not wanted:
            continue
        for state in group.instance_states:
            state.instance.security_groups = wanted
            for nic in state.instance.nics.values():
                nic._group_set = list(wanted)
    return None
