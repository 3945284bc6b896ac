"""Discovery against a seeded sandbox: what it finds, and that environments never mix."""

from pathlib import Path

from conftest import write_environment

from phasegate.aws import AwsClients
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.inventory import discover
from phasegate.sandbox.seed import seed_environment


def test_seeded_environment_is_todays_architecture(seeded: EnvironmentConfig) -> None:
    inv = discover(seeded)
    assert len(inv.vpcs) == 1
    vpc = inv.vpcs[0]
    assert len(inv.nat_gateways) == 2
    assert all(n.state == "available" and n.allocation_ids for n in inv.nat_gateways)
    assert len(vpc.internet_gateways) == 1
    assert sorted(s.public for s in vpc.subnets) == [False, False, True, True]
    private = [s for s in vpc.subnets if not s.public]
    tables = {t.id: t for t in vpc.route_tables}
    for subnet in private:
        route = tables[subnet.route_table_id].default_route()
        assert route is not None and route.target_type == "nat"

    [service] = inv.services
    assert (service.architecture, service.cpu, service.memory) == ("X86_64", 512, 1024)
    assert service.desired == service.running == 2
    assert set(service.subnets) == {s.id for s in private}
    assert not service.assign_public_ip

    [alb] = inv.load_balancers
    assert [tg.arn for tg in alb.target_groups] == service.target_groups

    [db] = inv.databases
    assert (db.instance_class, db.engine) == ("db.t3.micro", "postgres")
    [cache] = inv.caches
    assert (cache.node_type, cache.node_count) == ("cache.t3.micro", 2)
    assert inv.autoscaling_groups == []


def test_two_environments_never_mix(sandbox: str, tmp_path: Path) -> None:
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    seed_environment(clients, "alpha", 1)
    seed_environment(clients, "beta", 2)
    alpha = discover(parse_environment(write_environment(tmp_path, "alpha", sandbox)))
    beta = discover(parse_environment(write_environment(tmp_path, "beta", sandbox)))

    def ids(inv):
        return {
            *(v.id for v in inv.vpcs),
            *(s.id for s in inv.subnets),
            *(n.id for n in inv.nat_gateways),
            *(s.arn for s in inv.services),
            *(lb.arn for lb in inv.load_balancers),
            *(d.identifier for d in inv.databases),
            *(c.id for c in inv.caches),
        }

    assert len(ids(alpha)) == len(ids(beta)) == 1 + 4 + 2 + 1 + 1 + 1 + 1
    assert ids(alpha).isdisjoint(ids(beta))
    assert alpha.vpcs[0].cidr == "10.1.0.0/16" and beta.vpcs[0].cidr == "10.2.0.0/16"
