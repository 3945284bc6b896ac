"""Sandbox gap-filler: a load balancer created without `Scheme` is internet-facing.

That is AWS's default (Terraform's aws_lb with `internal = false` sends no Scheme); moto
stores no scheme at all and DescribeLoadBalancers then omits it, so inventory could not tell
an internet-facing ALB from an internal one. The default is added before moto sees the call.
"""

from typing import Any

from phasegate.sandbox.form_body import replace_form

DEFAULT_SCHEME = "internet-facing"


def fill(service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]) -> None:
    """Add AWS's default Scheme to a CreateLoadBalancer that has none; never answers itself."""
    creates = service == "elasticloadbalancing" and action == "CreateLoadBalancer"
    if creates and "Scheme" not in params:
        params["Scheme"] = [DEFAULT_SCHEME]
        replace_form(environ, params)
    return None
