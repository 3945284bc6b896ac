"""Phase 1 with the sandbox taking time like AWS: a re-run while the database is busy and the
service mid-deployment waits them out and keeps the ledger; rollback restores the original."""

from collections.abc import Iterator

import pytest
import requests

from flows.phase1 import phase1
from flows.rollback import rollback_phase
from phasegate.aws import AwsClients
from phasegate.checkpoints import checkpoint_storage
from phasegate.config import EnvironmentConfig
from phasegate.inventory import discover
from phasegate.ledger import Ledger
from tasks.registry import ordered

pytestmark = pytest.mark.usefixtures("prefect_client_env")

FACTOR = 0.01  # an RDS resize in 3 s, an ECS deployment in 1.2 s


@pytest.fixture
def slow(seeded: EnvironmentConfig, sandbox: str) -> Iterator[EnvironmentConfig]:
    """The seeded environment (seeded at factor 0, so it starts settled), then AWS-like time."""
    requests.post(f"{sandbox}/_phasegate/latency", json={"factor": FACTOR}, timeout=10)
    yield seeded
    requests.delete(f"{sandbox}/_phasegate/latency", timeout=10).raise_for_status()


def network(config: EnvironmentConfig) -> list[tuple[str, str, str]]:
    """Every route of every route table, a NAT gateway named by its subnet: rollback makes new
    gateways (new ids) in the same subnets, and the route tables must be as they were."""
    ec2 = AwsClients(config.aws).ec2
    subnet_of = {
        n["NatGatewayId"]: n["SubnetId"]
        for n in ec2.describe_nat_gateways()["NatGateways"]
        if n["State"] == "available"
    }
    return sorted(
        (
            t["RouteTableId"],
            str(r.get("DestinationCidrBlock") or r.get("DestinationPrefixListId")),
            f"nat@{subnet_of.get(r['NatGatewayId'], 'gone')}"
            if r.get("NatGatewayId")
            else str(r.get("GatewayId")),
        )
        for t in ec2.describe_route_tables()["RouteTables"]
        for r in t["Routes"]
    )


def test_rerun_waits_out_busy_resources_and_rollback_restores_the_original(
    slow: EnvironmentConfig, sandbox: str
) -> None:
    env = str(slow.source)
    before, before_network = discover(slow), network(slow)
    with checkpoint_storage(slow):
        phase1(env)
        ledger = Ledger(slow)
        chains = {step: len(ledger.chain(1, step)) for step in ordered(1)}
        for transition in (
            {"service": "rds", "id": "demo-db", "status": "modifying", "seconds": 2},
            {"service": "elasticache", "id": "demo-redis", "status": "snapshotting", "seconds": 2},
            {"service": "ecs", "id": "demo-cluster/demo-api", "seconds": 2},
        ):
            requests.post(
                f"{sandbox}/_phasegate/transitions", json=transition, timeout=10
            ).raise_for_status()
        assert discover(slow).databases[0].status == "modifying"
        state = phase1(env, return_state=True)
        assert state.is_completed()
        # Settling was waited out, not taken for drift: the chains did not grow.
        assert {step: len(ledger.chain(1, step)) for step in ordered(1)} == chains
        assert all(ledger.last_drift(1, step) is None for step in ordered(1))

        outcome = rollback_phase(env, 1)
    assert set(outcome.values()) == {"rolled back"}
    after = discover(slow)
    assert network(slow) == before_network
    assert len(after.nat_gateways) == len(before.nat_gateways) == 2
    assert [s.task_definition for s in after.services] == [
        s.task_definition for s in before.services
    ]
    assert [s.architecture for s in after.services] == ["X86_64"]
    assert [d.instance_class for d in after.databases] == ["db.t3.micro"]
    assert [c.node_type for c in after.caches] == ["cache.t3.micro"]
