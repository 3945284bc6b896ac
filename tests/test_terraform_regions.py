"""regions.expand through Terraform: the second region as terraform/'s secondary_region module,
applied part by part by real Terraform and the real AWS provider against a sandbox of this
module's own (tests/terraform_stack.py), second region us-west-2.

A phase is planned and approved before its first sub-step runs: the network and the dns
parts (the dns stands on the network, ALB and compute parts) are planned before any part
exists, each plan its own part only, and run against the digests approved; the others plan
as they run. The API form's own reading verifies what Terraform made, the stack plans clean
and a second run changes nothing; the rollback, in reverse, leaves neither region nor Route
53 with anything of phase 3's. Then, with the primary on the EC2 group, the parts that differ
there are planned. The tests run in file order on one stack; each Terraform command
refreshes the whole stack (15-25 s of CPU here, 20 minutes for the first test under CI's
load), so the module makes no more than that takes.
"""

import shutil
from pathlib import Path
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
    # Each sub-step is a plan and an apply (two plans ahead of the parts it stands on); the
    # replica alone is ~100 s of the provider's polling.
    pytest.mark.timeout(1800),
    pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not on PATH"),
]

REGION_STEPS = [s for s in STEPS if s.startswith("regions.expand.")]
RECORD = f"app.{hosted_zone_name(ENV)}"
M = "module.secondary_region[0]."
PART = {  # what each sub-step's plan creates: its own part of the module, nothing else
    "regions.expand.network": {
        *(f"{M}aws_{r}" for r in ("default_security_group.this", "internet_gateway.this",
                                  "route.internet", "route_table.public", "vpc.this")),
        *(f"{M}aws_{r}[{i}]" for r in ("subnet.public", "route_table_association.public")
          for i in (0, 1)),
        f"{M}terraform_data.parts_in_order",
    },
    "regions.expand.alb": {
        f"{M}aws_security_group.app[0]",
        *(f"{M}module.alb[0].aws_{r}" for r in ("lb.this", "lb_listener.http",
                                                "lb_target_group.app", "security_group.alb")),
    },
    "regions.expand.database": {
        f"{M}aws_db_instance.replica[0]", f"{M}aws_db_subnet_group.replica[0]",
        f"{M}aws_security_group.db[0]",
    },
    "regions.expand.cache": {
        f"{M}aws_security_group.cache[0]",
        f"{M}module.redis[0].aws_elasticache_replication_group.this",
        f"{M}module.redis[0].aws_elasticache_subnet_group.this",
    },
    "regions.expand.compute": {
        f"{M}module.compute[0].aws_{r}" for r in (
            "cloudwatch_log_group.app", "ecs_cluster.this", "ecs_cluster_capacity_providers.this",
            "ecs_service.app", "ecs_task_definition.app", "iam_role.execution",
            "iam_role_policy.execution")
    },
    "regions.expand.dns": {
        f'{M}aws_route53_{r}["{side}"]' for r in ("health_check.side", "record.failover")
        for side in ("primary", "secondary")
    },
}  # fmt: skip
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


def test_the_second_region_planned_ahead_then_applied_part_by_part(
    regions: EnvironmentConfig, tf_sandbox: str
) -> None:
    clients = AwsClients(regions.aws)
    BEFORE.update(inventory(clients))

    # Planned before any part exists: each plan is its own part only (dns stands on three).
    ahead = ["regions.expand.network", "regions.expand.dns"]
    changes = {s: lifecycle.plan(step_of(regions, s)) for s in ahead}
    for step_id, change in changes.items():
        assert change is not None, step_id
        assert not change.blockers, (step_id, change.blockers)
        assert "DANGEROUS" not in " ".join(change.actions), step_id
        assert set(_addresses(change)) == PART[step_id], step_id
        assert change.desired["plan"]["adds"] == len(PART[step_id]), step_id
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

    # Run in order, the planned ones against the digest approved above (PlanChanged
    # otherwise); verify is the API form's own reading of the second region.
    for step_id in REGION_STEPS:
        change = changes.get(step_id)
        approved = change.digest() if change else None
        record = lifecycle.execute(step_of(regions, step_id), "run", approved_digest=approved)
        assert record.change is not None, step_id
        planned = {r["address"] for r in record.change.desired["plan"]["resources"]}
        assert planned == PART[step_id], step_id  # planned as it ran: its own part only
        if step_id == "regions.expand.database":
            assert record.change.monthly_cost_delta > 0  # priced as the API form prices it

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


EC2_COPY = {
    f"{M}module.compute_ec2[0].aws_{r}"
    for r in (
        "iam_role.instance",
        "iam_role_policy.pull_image",
        "iam_instance_profile.instance",
        "launch_template.app",
        "autoscaling_group.app",
    )
}


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


def test_on_the_ec2_target_the_copy_is_the_group_behind_an_instance_target_group(
    regions: EnvironmentConfig, tmp_path: Path
) -> None:
    """With the primary on the EC2 group (its variables applied directly: the staged move is
    test_terraform's), the compute part plans compute_ec2's group and launch template and no
    target group of its own, and the ALB part a target group taking instances. Planned only:
    applying them made the API form's reading hold and the stack plan clean when checked by
    hand; a second round of applies does not fit CI's time."""
    stack_ = stack_for(regions.terraform, regions.source, regions.name)
    on_ec2 = {"ec2_group_enabled": True, "compute_mode": "ec2", "ecs_service_enabled": False}
    stack_.write_variables({**stack_.variables(), **on_ec2})
    stack_.select_workspace()
    stack_.plan(tmp_path / "ec2.tfplan")
    stack_.apply_saved(tmp_path / "ec2.tfplan")
    targets = regions.targets.model_copy(update={"compute": "ec2-asg-graviton"})
    config = regions.model_copy(update={"targets": targets})

    compute = lifecycle.plan(step_of(config, "regions.expand.compute"))
    assert compute is not None and set(_addresses(compute)) == EC2_COPY
    assert "Auto Scaling group" in compute.summary  # the API form's own reading agrees
    alb = lifecycle.plan(step_of(config, "regions.expand.alb"))
    assert alb is not None and set(_addresses(alb)) == PART["regions.expand.alb"]
    assert "instance targets" in alb.summary
