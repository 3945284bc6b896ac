"""Sandbox gap-filler: an ECS service's `availabilityZoneRebalancing`.

AWS stores the value CreateService or UpdateService was given (DISABLED when none was) and
DescribeServices returns it; moto drops it, so Terraform's aws_ecs_service shows a change on
every plan. Here the value asked for is kept per service and put on moto's own service
object, which moto's serializer then returns like any other field.
"""

import json
import threading
from typing import Any

from phasegate.sandbox.latency import account_and_region

DEFAULT = "DISABLED"
FIELD = "availability_zone_rebalancing"

_requested: dict[tuple[str, str, str], str] = {}
_lock = threading.Lock()


def request_body(environ: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of an ECS request, read without consuming it for moto."""
    stream = environ["wsgi.input"]
    raw = stream.read()
    stream.seek(0)
    try:
        loaded = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def resource_name(name_or_arn: str) -> str:
    """A service's or cluster's name, given it or its ARN."""
    return name_or_arn.rsplit("/", 1)[-1]


def fill(service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]) -> None:
    """Remember the value a create or update asks for; put it on moto's services. Never
    answers itself."""
    if service != "ecs" or action not in ("CreateService", "UpdateService", "DescribeServices"):
        return None
    from moto.ecs.models import ecs_backends

    account, region = account_and_region(environ)
    body = request_body(environ)
    with _lock:
        if action in ("CreateService", "UpdateService") and body.get("availabilityZoneRebalancing"):
            name = resource_name(body.get("serviceName") or body.get("service", ""))
            _requested[(account, region, name)] = body["availabilityZoneRebalancing"]
        for found in ecs_backends[account][region].services.values():
            wanted = _requested.get((account, region, found.name))
            if wanted is not None or getattr(found, FIELD, None) is None:
                setattr(found, FIELD, wanted or DEFAULT)
    return None
