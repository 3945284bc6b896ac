"""The second region (`regions.secondary`) as discovery sees it: the same tags, one more.

Everything phasegate makes in the second region carries the environment's discovery tags and
`PhasegateRole: secondary` (the shared contract of regions.expand), so the primary's own
discovery never mistakes a standby copy for its own resources, and this one finds only what
regions.expand made. The inventory, the cost table, the gates and `phasegate failover` read
the second region through here.
"""

from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig
from phasegate.inventory import Discovery, Inventory

ROLE_TAG = "PhasegateRole"
SECONDARY_ROLE = "secondary"


def secondary_tags(config: EnvironmentConfig) -> dict[str, str]:
    """The tags every resource of `config`'s second region carries."""
    return {**config.discovery.tags, ROLE_TAG: SECONDARY_ROLE}


def secondary_config(config: EnvironmentConfig) -> EnvironmentConfig | None:
    """`config` pointed at its second region and its tags; None without `regions.secondary`.

    Only region and tags change: the account, credentials and endpoint are the primary's.
    """
    region = config.regions.secondary
    if region is None:
        return None
    return config.model_copy(
        update={
            "aws": config.aws.model_copy(update={"region": region}),
            "discovery": config.discovery.model_copy(update={"tags": secondary_tags(config)}),
        }
    )


def discover_secondary(config: EnvironmentConfig) -> Inventory | None:
    """The second region's inventory, or None when the environment has no second region."""
    secondary = secondary_config(config)
    if secondary is None:
        return None
    clients = AwsClients(secondary.aws)
    return Discovery(secondary, clients).inventory()


def tagged_health_checks(config: EnvironmentConfig) -> int:
    """How many Route 53 health checks (a global service) carry the second region's tags:
    the failover records' checks regions.expand made, billed every month."""
    if config.regions.secondary is None:
        return 0
    route53 = AwsClients(config.aws).client("route53")
    ids = [
        check["Id"]
        for page in route53.get_paginator("list_health_checks").paginate()
        for check in page["HealthChecks"]
    ]
    wanted = secondary_tags(config)
    count = 0
    for i in range(0, len(ids), 10):  # ListTagsForResources takes 10 ids at a time
        found = route53.list_tags_for_resources(
            ResourceType="healthcheck", ResourceIds=ids[i : i + 10]
        )
        for tagged in found["ResourceTagSets"]:
            tags = {t["Key"]: t["Value"] for t in tagged.get("Tags", [])}
            count += all(tags.get(k) == v for k, v in wanted.items())
    return count
