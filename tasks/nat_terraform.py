"""nat.remove through Terraform: the API executor's order, as two applies of the stack.

One apply of `service_subnets = "public"` and `enable_nat_gateway = false` together would let
Terraform destroy the gateways and their routes while ECS still runs the app's tasks in the
private subnets: Terraform knows no order between the two. So the step applies in stages:

1. `service_subnets = "public"`, `enable_s3_endpoint = true`: the tasks move to the public
   subnets with public IPs (a rolling replacement) and the S3 gateway endpoint is added; then
   ECS is waited on until every service of the environment is stable;
2. `enable_nat_gateway = false`: the routes through NAT, the gateways, their Elastic IPs.

Rollback applies them in reverse: the gateways and their routes are back (Terraform waits for
a gateway to be available) before the tasks return to the private subnets.

Under Terraform phasegate makes no call behind the stack, so what the API executor fixes with
calls of its own blocks the step instead, saying what to change in the stack: a data store's
security group that admits the app only by the private subnets' addresses (from the public
subnets its tasks would be refused: connections time out), network ACL entries the moved tasks
would need, and a service whose security groups admit more than the ALB (the API executor
gives it an ALB-only group of its own).
"""

from typing import Any

from phasegate.aws import AwsClients
from phasegate.steps import Change
from tasks import data_access, data_acl

STAGES: tuple[dict[str, Any], ...] = (
    {"service_subnets": "public", "enable_s3_endpoint": True},
    {"enable_nat_gateway": False},
)

_IN_THE_STACK = "under executor: terraform phasegate makes no change behind the stack"


def _ports(rule: dict[str, Any]) -> str:
    low, high = rule["from_port"], rule["to_port"]
    if rule["protocol"] == "-1":
        return "all traffic"
    return f"{rule['protocol']} {low}" + (f"-{high}" if high != low else "")


def blockers(clients: AwsClients, change: Change) -> list[str]:
    """What the stack must say itself before the planned removal `change` can be applied."""
    desired = change.desired
    found = []
    for move in desired.get("services", []):
        label = f"ECS service {move['cluster']}/{move['name']}"
        groups = move.get("security_groups")
        if not groups:
            found.append(
                f"{label}: its security groups admit more than the ALB, and {_IN_THE_STACK}: "
                "make its security group in the stack admit only the ALB, apply, then plan again"
            )
            continue
        for group in sorted(groups):
            for rule in data_access.needed_rules(
                clients,
                desired.get("data_store_groups", {}),
                desired.get("private_cidrs", {}).get(move["vpc_id"], []),
                desired.get("public_cidrs", {}).get(move["arn"], []),
                group,
            ):
                found.append(
                    f"{rule['guards']}: security group {rule['group_id']} admits {_ports(rule)} "
                    f"from the private subnets only ({rule['because']}), so {label} moved to "
                    f"the public subnets would be refused, and {_IN_THE_STACK}: admit the app's "
                    f"security group {group} there in the stack, apply, then plan again"
                )
    for entry in desired.get("data_store_acl_entries", []):
        found.append(
            f"the moved tasks need {data_acl.describe(entry)}, and {_IN_THE_STACK}: add the "
            "entry in the stack, apply, then plan again"
        )
    return found
