"""The health gate's view of the second region (`regions.secondary`, phase 3).

A standby that is broken is found at failover time, the worst moment, unless the gate watches
it all along. Once regions.expand has made something there, every round measures the second
region with the same checks as the primary (its ALB, replica, cache, compute and alarms, from
that region's CloudWatch and describe calls), each check's resource named with its region so
the two are judged apart. Before that (phases 1 and 2, or no second region) there is nothing
there to check, and the gate reads the primary only.

What those checks must mean on a real account, where the standby serves nobody: its ALB sits
behind Route 53's SECONDARY failover record, so while the primary is healthy its only
requests are Route 53's health checks (regions.expand.dns makes them with RequestInterval 30:
one request per 30 s from each checker region, 8 by default, so about 16 a minute, 80 in the
default 5-minute window; AWS says the real rate can be higher, every 2-3 s, which changes
nothing below). So, for the second region only (StandbyChecks):

- The 5xx ratios (the targets' and the ALB's own) are judged over those health-check
  requests, with the primary's `max_5xx_ratio`, but a ratio over 80 requests cannot resolve
  1 %: one stray 5xx would be 1.25 % and fail the gate. At least one 5xx in the window is
  allowed (`max(max_5xx_ratio x requests, 1)`); a standby that cannot serve answers every
  health check 503 and fails at once. No request at all in the window (no RequestCount
  datapoint) stays inconclusive, never a pass: not even Route 53 is reaching the standby,
  so nobody knows whether it could serve. It is not an idle standby failing forever: an
  idle standby that Route 53 checks has requests.
- Healthy hosts are judged on the window's latest minute, not its lowest: a standby carries
  no user, so a dip that has recovered (its targets registering while it was being built)
  hurt nobody; what counts is that it could take traffic now, which every round asks again.
- The replica's DatabaseConnections is not judged: an idle standby's replica has no client
  (0 is normal there), and "0 connections" means "the app lost its database" only for the
  database the app uses. Its ReplicaLag is its check instead.

Everything else (statuses, CPU, memory, evictions, running == desired, alarms) reads the same
in both regions. Metrics that only exist with traffic (TargetResponseTime) are there because
the health checks are traffic.
"""

from dataclasses import dataclass
from datetime import datetime

from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig
from phasegate.gate_checks import GateChecks, Series
from phasegate.gate_results import CheckResult
from phasegate.inventory import Database, Discovery, Inventory, TargetGroup
from phasegate.secondary_region import secondary_config


@dataclass
class SecondRegionChecks:
    """The gate's checks of what discovery found in the second region, discovered once."""

    region: str
    checks: "StandbyChecks"
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
        checks = StandbyChecks(secondary, regional)
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


class StandbyChecks(GateChecks):
    """The second region's checks: a standby judged as one that serves only Route 53's
    health checks (see the module's docstring)."""

    no_requests = (
        "no requests in the window, not even Route 53's health checks: nothing shows whether "
        "the standby could serve"
    )

    def ratio_threshold(self) -> str:
        return f"<= {self.gates.max_5xx_ratio:g} (1 request always allowed)"

    def errors_allowed(self, requests: float) -> float:
        return max(self.gates.max_5xx_ratio * requests, 1.0)

    def hosts_judged(self, hosts: Series) -> tuple[float, str]:
        return max(hosts)[1], "latest"

    def judges_connections(self, db: Database) -> bool:
        return not db.replica_source
