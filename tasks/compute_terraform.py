"""compute.graviton's EC2 move through Terraform: the API executor's order, as three applies.

One apply of `compute_mode = "ec2"` would create the Auto Scaling group, point the listener at
its target group and delete the ECS service together: Terraform knows no order between them,
and an instance is not healthy until it has booted and pulled the image, so users would meet
a target group with nothing healthy in it (503s) for minutes. So the move applies in stages,
each settled before the next:

1. `ec2_group_enabled = true` (and the group's type and sizes): compute_ec2's group and its
   instance target group, which the listener forwards to at weight 0 (AWS health-checks a
   group only while a listener forwards to it; weight 0 sends it no users); then the group's
   instances are waited on until they are InService and healthy there;
2. `compute_mode = "ec2"`: the listener forwards to the group;
3. `ecs_service_enabled = false`: the ECS service goes.

Rollback applies them in reverse: the ECS service is back and stable (its group at weight 0)
before the listener returns to it, and the group goes last.
"""

from typing import Any

from phasegate.inventory import Discovery
from phasegate.steps import Step
from tasks.compute_ec2 import healthy_in_service


def ec2_stages(instance_type: str, asg_min: int, asg_max: int) -> list[dict[str, Any]]:
    return [
        {
            "ec2_group_enabled": True,
            "ec2_instance_type": instance_type,
            "asg_min": asg_min,
            "asg_max": asg_max,
        },
        {"compute_mode": "ec2"},
        {"ecs_service_enabled": False},
    ]


def _groups_serving(step: Step) -> list[str]:
    """Each Auto Scaling group of the environment whose InService instances are not all
    healthy in its target groups (or fewer than it wants): what is not ready to serve."""
    clients = step.ctx.clients
    waiting = []
    for group in Discovery(step.ctx.config, clients).autoscaling_groups():
        [described] = clients.autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[group.name]
        )["AutoScalingGroups"]
        for arn in described.get("TargetGroupARNs", []):
            if len(healthy_in_service(clients, described, arn)) < described["DesiredCapacity"]:
                waiting.append(f"{group.name} in {arn.rsplit(':', 1)[-1]}")
    return waiting


def _services_unstable(step: Step) -> list[str]:
    """Each ECS service of the environment still rolling out or short of its tasks."""
    clients = step.ctx.clients
    waiting = []
    for service in Discovery(step.ctx.config, clients).services():
        [described] = clients.ecs.describe_services(
            cluster=service.cluster, services=[service.name]
        )["services"]
        deployments = described.get("deployments", [])
        if len(deployments) > 1 or described["runningCount"] < described["desiredCount"]:
            waiting.append(f"{service.cluster}/{service.name}")
    return waiting


def wait_until_serving(step: Step) -> None:
    """After a stage: every group's instances healthy in its target groups and every ECS
    service stable, whichever computes the stage left running."""
    step.ctx.wait(
        "the environment's compute healthy behind the ALB",
        lambda: _groups_serving(step) + _services_unstable(step),
        lambda waiting: not waiting,
        kind="ecs_deploy",  # instances booting, or tasks rolling out: a deployment either way
    )
