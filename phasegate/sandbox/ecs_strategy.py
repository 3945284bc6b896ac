"""Sandbox gap-filler: an ECS service created with a capacity provider strategy.

AWS keeps the strategy CreateService was given, and such a service has no launch type
(DescribeServices returns `capacityProviderStrategy` and omits `launchType`). moto's
CreateService ignores the strategy and gives the service launch type EC2, so Terraform's
aws_ecs_service made with `capacity_provider_strategy` planned a replacement right after
apply, and discovery priced its Fargate tasks as EC2. Here the strategy asked for is
remembered and put on moto's service at the next ECS service call (the service exists once
moto has answered the create), which moto's serializer then returns like any other field.
"""

import threading
from typing import Any

from phasegate.sandbox.ecs_rebalancing import request_body, resource_name
from phasegate.sandbox.latency import account_and_region

_created_with: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
_lock = threading.Lock()
SERVICE_ACTIONS = ("CreateService", "UpdateService", "DescribeServices", "DeleteService")


def _put_strategy(service: Any, strategy: list[dict[str, Any]]) -> None:
    service.capacity_provider_strategy = strategy
    service.launch_type = None
    for deployment in service.deployments:
        deployment.pop("launchType", None)
        deployment["capacityProviderStrategy"] = strategy


def fill(service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]) -> None:
    """Remember a create's strategy; put the ones remembered on moto's services. Never
    answers itself."""
    if service != "ecs" or action not in SERVICE_ACTIONS:
        return None
    from moto.ecs.models import ecs_backends

    account, region = account_and_region(environ)
    backend = ecs_backends[account][region]
    with _lock:
        for key in [k for k in _created_with if k[:2] == (account, region)]:
            found = backend.services.get(f"{key[2]}:{key[3]}")
            if found is not None:  # created by now: the strategy is the create's, once
                _put_strategy(found, _created_with.pop(key))
        body = request_body(environ)
        if action == "CreateService":  # a create moto refused left nothing to remember
            cluster = resource_name(body.get("cluster") or "default")
            key = (account, region, cluster, body.get("serviceName", ""))
            _created_with.pop(key, None)
            if body.get("capacityProviderStrategy"):
                _created_with[key] = body["capacityProviderStrategy"]
    return None
