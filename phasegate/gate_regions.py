"""The health gate's view of the second region (`regions.secondary`, phase 3).

A standby that is broken is found at failover time, the worst moment, unless the gate watches
it all along. Once regions.expand has made something there, every round measures the second
region with the same checks as the primary (its ALB, replica, cache, compute and alarms, from
that region's CloudWatch and describe calls), each check's resource named with its region so
the two are judged apart. Before that (phases 1 and 2, or no second region) there is nothing
there to check, and the gate reads the primary only.
"""

from dataclasses import dataclass
from datetime import datetime

from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig
from phasegate.gate_checks import GateChecks
from phasegate.gate_results import CheckResult
from phasegate.inventory import Discovery, Inventory, TargetGroup
from phasegate.secondary_region import secondary_config


@dataclass
class SecondRegionChecks:
    """The gate's checks of what discovery found in the second region, discovered once."""

    region: str
    checks: GateChecks
    inventory: Inventory
    serving: dict[str, list[TargetGroup]]

    @classmethod
    def discover(
        cls, config: EnvironmentConfig, clients: AwsClients
    ) -> "SecondRegionChecks | None":
        """The second region's checks, or None when it has nothing to check (yet)."""
        secondary = secondary_config(config)
        if secondary is None:
            return None
        regional = AwsClients(secondary.aws, policy=clients.policy)
        inventory = Discovery(secondary, regional).inventory()
        if not has_workload(inventory):
            return None
        checks = GateChecks(secondary, regional)
        return cls(
            region=secondary.aws.region,
            checks=checks,
            inventory=inventory,
            serving=checks.serving_target_groups(inventory),
        )

    def measure(self, at: datetime) -> list[CheckResult]:
        """Every check of the second region once, each resource named '... (REGION)'."""
        return [
            check.model_copy(update={"resource": f"{check.resource} ({self.region})"})
            for check in self.checks.measure(self.inventory, self.serving, at)
        ]


def has_workload(inventory: Inventory) -> bool:
    """Whether `inventory` holds anything a gate checks (a network alone is not checked)."""
    return bool(
        inventory.load_balancers
        or inventory.services
        or inventory.databases
        or inventory.caches
        or inventory.autoscaling_groups
    )
