"""Security groups the steps create and delete (the app's, admitting only the ALB)."""

from phasegate.errors import AwsCallError
from phasegate.steps import StepContext


def delete_security_group(ctx: StepContext, group_id: str) -> None:
    """Delete `group_id`, waiting out DependencyViolation while replaced tasks' or terminated
    instances' network interfaces still hold it; a group already gone is fine."""

    def attempt() -> bool:
        try:
            ctx.clients.ec2.delete_security_group(GroupId=group_id)
        except AwsCallError as exc:
            if exc.code == "DependencyViolation":
                return False
            if exc.code != "InvalidGroup.NotFound":
                raise
        return True

    ctx.wait(f"security group {group_id} deleted", attempt, bool, kind="other")
