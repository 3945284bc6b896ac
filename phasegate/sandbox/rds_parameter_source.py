"""Sandbox gap-filler: DescribeDBParameters says where each value came from.

On AWS every parameter DescribeDBParameters returns has a `Source`: `user` for a value set
by CreateDBParameterGroup's caller or ModifyDBParameterGroup, else `engine-default` or
`system`. moto (5.x) stores only the parameters set, without Source, and Terraform's
aws_db_parameter_group skips a parameter without Source when its configuration lists
parameters, so it read none back and planned every parameter again on every run. Every
value moto stores was set by a caller, so here each gets `Source = user` before moto answers.
"""

from typing import Any

from phasegate.sandbox.latency import account_and_region

USER = "user"


def fill(service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]) -> None:
    """Mark the group's stored parameters as the user's; never answers itself."""
    if service != "rds" or action != "DescribeDBParameters":
        return None
    from moto.rds.models import rds_backends

    account, region = account_and_region(environ)
    name = params.get("DBParameterGroupName", [""])[0].lower()
    group = rds_backends[account][region].db_parameter_groups.get(name)
    for parameter in group.parameters.values() if group is not None else []:
        parameter.setdefault("Source", USER)
    return None
