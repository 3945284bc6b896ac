"""regions.expand through Terraform: the second region as terraform/'s secondary_region module,
applied part by part by real Terraform and the real AWS provider against a sandbox of this
module's own (tests/terraform_stack.py), second region us-west-2.

The phase is planned whole before its first sub-step runs, as a phase is approved; each
sub-step then runs against the digest approved, the API form's own reading verifies what
Terraform made, the stack plans clean and a second run changes nothing. The rollback, in
reverse, leaves neither region nor Route 53 with anything of phase 3's, and the stack clean.
The tests run in file order on one stack.
"""

import shutil
from typing import Any

import pytest
from region_inventory import SECONDARY, inventory
from terraform_stack import ENV, second_run_changes_nothing, step_of

from phasegate import lifecycle
from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig
from phasegate.inventory import discover
from phasegate.sandbox.seed import hosted_zone_name, seed_hosted_zone
from phasegate.secondary_region import discover_secondary
from phasegate.steps import Change
from phasegate.terraform.executor import stack_for
from tasks.registry import STEPS

pytestmark = [
    pytest.mark.terraform,
    # Each sub-step is a plan and an apply (the one it stands on planned too, while it has
    # not run); the replica alone is ~100 s of the provider's polling.
    pytest.mark.timeout(1200),
    pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not on PATH"),
]

REGION_STEPS = [s for s in STEPS if s.startswith("regions.expand.")]
RECORD = f"app.{hosted_zone_name(ENV)}"
PART = {
    "regions.expand.network": "module.secondary_region[0].aws_",
    "regions.expand.alb": "module.secondary_region[0].",  # the alb module and the app's group
    "regions.expand.database": "module.secondary_region[0].",
    "regions.expand.cache": "module.secondary_region[0].",
    "regions.expand.compute": "module.secondary_region[0].module.compute[0].",
    "regions.expand.dns": "module.secondary_region[0].aws_route53_",
}
BEFORE: dict[str, Any] = {}


@pytest.fixture(scope="module")
def regions(stack: EnvironmentConfig) -> EnvironmentConfig:
    """The Terraform-made `tfdemo` with a second region and its public zone."""
    clients = AwsClients(stack.aws)
    seed_hosted_zone(clients, ENV)
    settings = {"secondary": SECONDARY, "hosted_zone": hosted_zone_name(ENV), "record_name": RECORD}
    return stack.model_copy(update={"regions": stack.regions.model_copy(update=settings)})


def _addresses(change: Change) -> list[str]:
    return [r["address"] for r in change.desired["plan"]["resources"]]


def test_the_second_region_planned_whole_then_applied_part_by_part(
    regions: EnvironmentConfig, tf_sandbox: str
) -> None:
    clients = AwsClients(regions.aws)
    BEFORE.update(inventory(clients))

    # Planned whole, before any part exists: each sub-step's plan is its own part only.
    changes = {s: lifecycle.plan(step_of(regions, s)) for s in REGION_STEPS}
    for step_id, change in changes.items():
        assert change is not None, step_id
        assert not change.blockers, (step_id, change.blockers)
        assert "DANGEROUS" not in " ".join(change.actions), step_id
        addresses = _addresses(change)
        assert addresses and all(a.startswith(PART[step_id]) for a in addresses), addresses
    network = changes["regions.expand.network"]
    assert network.desired["variables"] == {
        "secondary_region": SECONDARY,
        "enable_secondary_network": True,
        "secondary_vpc_cidr": "10.129.0.0/16",  # the primary's 10.1.0.0/16, 128 apart
        "secondary_tags": {"Environment": ENV, "PhasegateRole": "secondary"},
    }
    assert network.desired["stages"] == [
        {"secondary_region": SECONDARY},
        {k: v for k, v in network.desired["variables"].items() if k != "secondary_region"},
    ]
    database = _addresses(changes["regions.expand.database"])
    assert "module.secondary_region[0].aws_db_instance.replica[0]" in database
    assert changes["regions.expand.database"].monthly_cost_delta > 0  # priced as the API form

    # Run in order, each against the digest approved above (PlanChanged otherwise); verify
    # is the API form's own reading of the second region.
    for step_id in REGION_STEPS:
        lifecycle.execute(
            step_of(regions, step_id), "run", approved_digest=changes[step_id].digest()
        )

    secondary = discover_secondary(regions)
    assert secondary is not None
    [vpc] = secondary.vpcs
    assert vpc.cidr == "10.129.0.0/16" and vpc.nat_gateways == []
    copied = [(s.name, s.architecture, s.desired, s.running) for s in secondary.services]
    primary_services = discover(regions).services
    assert copied == [(s.name, s.architecture, s.desired, s.desired) for s in primary_services]
    assert [lb.scheme for lb in secondary.load_balancers] == ["internet-facing"]
    assert [(c.node_type, c.node_count) for c in secondary.caches] == [("cache.t3.micro", 2)]
    [replica] = clients.client("rds", SECONDARY).describe_db_instances()["DBInstances"]
    [primary] = clients.rds.describe_db_instances(DBInstanceIdentifier=f"{ENV}-db")["DBInstances"]
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == primary["DBInstanceArn"]
    records = clients.route53.list_resource_record_sets(HostedZoneId=_zone(clients))
    failover = {
        r["Failover"]: r["AliasTarget"]["DNSName"]
        for r in records["ResourceRecordSets"]
        if r.get("Failover")
    }
    [own_alb] = clients.client("elbv2", SECONDARY).describe_load_balancers()["LoadBalancers"]
    assert failover["SECONDARY"].rstrip(".") == own_alb["DNSName"]

    stack_ = stack_for(regions.terraform, regions.source, regions.name)
    assert stack_.drifted() == (False, "no changes")  # Terraform and AWS agree
    for step_id in REGION_STEPS:
        second_run_changes_nothing(step_of(regions, step_id), tf_sandbox)


def _zone(clients: AwsClients) -> str:
    zones = clients.route53.list_hosted_zones_by_name(DNSName=hosted_zone_name(ENV))
    return str(zones["HostedZones"][0]["Id"])


def test_rollback_in_reverse_leaves_nothing_of_the_second_region(
    regions: EnvironmentConfig,
) -> None:
    assert BEFORE, "runs after the apply test"
    clients = AwsClients(regions.aws)
    for step_id in reversed(REGION_STEPS):  # verify_rollback: the stack plans clean each time
        assert lifecycle.undo(step_of(regions, step_id)) == "rolled back", step_id

    assert inventory(clients) == BEFORE  # both regions and Route 53 as before phase 3
    stack_ = stack_for(regions.terraform, regions.source, regions.name)
    assert stack_.variables()["enable_secondary_network"] is False
    assert stack_.variables()["secondary_region"] == ""  # cleared once the copy was gone
