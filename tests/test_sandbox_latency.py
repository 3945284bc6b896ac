"""The sandbox takes time like AWS: the latency model and hold faults, over real HTTP.

Real boto3 clients talk to the session's sandbox server. Each test sets the latency factor
it needs and the autouse fixture puts it back to 0 (with every pending transition
completed), so other tests keep an instant sandbox. Durations are never asserted: a state in
the middle is read right after the call that starts it (scaled times of a second or more),
the end state is polled for with a generous deadline.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import free_port
from typer.testing import CliRunner

from phasegate.config import EnvironmentConfig, load_environment
from phasegate.local_server import stop_server
from phasegate.sandbox import cli
from phasegate.sandbox.latency import BASE_SECONDS
from phasegate.sandbox.server import state_path, stop_sandbox

T = TypeVar("T")

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture(autouse=True)
def _instant_after(moto_server: str) -> Iterator[None]:
    """Factor 0 and nothing pending, before and after each test."""
    requests.delete(f"{moto_server}/_phasegate/latency", timeout=10).raise_for_status()
    yield
    requests.delete(f"{moto_server}/_phasegate/latency", timeout=10).raise_for_status()
    requests.delete(f"{moto_server}/_phasegate/faults", timeout=10).raise_for_status()


def client(endpoint: str, service: str, config: Config | None = None) -> Any:
    return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint, config=config)


def set_factor(endpoint: str, factor: float) -> None:
    answer = requests.post(f"{endpoint}/_phasegate/latency", json={"factor": factor}, timeout=10)
    answer.raise_for_status()
    assert answer.json()["factor"] == factor


def until(probe: Callable[[], T], done: Callable[[T], bool], deadline: float = 30) -> T:
    """Poll `probe` until `done` says so; the last value. Fails after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = probe()
        if done(value):
            return value
        assert time.monotonic() < end, f"still not there after {deadline} s: {value!r}"
        time.sleep(0.05)


def transitions(endpoint: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{endpoint}/_phasegate/transitions", timeout=10)
    answer.raise_for_status()
    return answer.json()


def db(endpoint: str, ident: str = "demo-db") -> dict[str, Any]:
    rds = client(endpoint, "rds")
    return rds.describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"][0]


def group(endpoint: str, group_id: str = "demo-redis") -> dict[str, Any]:
    elasticache = client(endpoint, "elasticache")
    return elasticache.describe_replication_groups(ReplicationGroupId=group_id)[
        "ReplicationGroups"
    ][0]


def service(endpoint: str, cluster: str = "demo-cluster", name: str = "demo-api") -> dict:
    ecs = client(endpoint, "ecs")
    return ecs.describe_services(cluster=cluster, services=[name])["services"][0]


def nat_state(endpoint: str, nat_id: str) -> str:
    ec2 = client(endpoint, "ec2")
    return ec2.describe_nat_gateways(NatGatewayIds=[nat_id])["NatGateways"][0]["State"]


def stable(svc: dict[str, Any]) -> bool:
    return len(svc["deployments"]) == 1 and svc["runningCount"] == svc["desiredCount"]


# -- the factor -----------------------------------------------------------------------------


def test_latency_endpoint_sets_reads_and_resets_the_factor(sandbox: str) -> None:
    got = requests.get(f"{sandbox}/_phasegate/latency", timeout=10).json()
    assert got == {"factor": 0.0, "base_seconds": BASE_SECONDS}
    assert BASE_SECONDS["rds.modify"] == 300 and BASE_SECONDS["cache.modify"] == 600

    set_factor(sandbox, 0.25)
    assert requests.get(f"{sandbox}/_phasegate/latency", timeout=10).json()["factor"] == 0.25
    for bad in ({"factor": -1}, {"factor": "fast"}, {"factor": True}, {"speed": 1}, [1]):
        answer = requests.post(f"{sandbox}/_phasegate/latency", json=bad, timeout=10)
        assert answer.status_code == 400, bad
        assert answer.json()["error"]
    assert requests.get(f"{sandbox}/_phasegate/latency", timeout=10).json()["factor"] == 0.25

    assert requests.delete(f"{sandbox}/_phasegate/latency", timeout=10).json()["factor"] == 0


def test_factor_zero_is_instant(seeded: EnvironmentConfig) -> None:
    endpoint = seeded.aws.endpoint_url
    assert endpoint is not None
    ec2, ecs = client(endpoint, "ec2"), client(endpoint, "ecs")

    client(endpoint, "rds").modify_db_instance(
        DBInstanceIdentifier="demo-db", DBInstanceClass="db.t4g.micro", ApplyImmediately=True
    )
    live = db(endpoint)
    assert live["DBInstanceStatus"] == "available" and live["DBInstanceClass"] == "db.t4g.micro"
    assert not live.get("PendingModifiedValues")

    client(endpoint, "elasticache").modify_replication_group(
        ReplicationGroupId="demo-redis", CacheNodeType="cache.t4g.micro", ApplyImmediately=True
    )
    assert group(endpoint)["Status"] == "available"
    assert group(endpoint)["CacheNodeType"] == "cache.t4g.micro"

    nat_id = ec2.describe_nat_gateways()["NatGateways"][0]["NatGatewayId"]
    ec2.delete_nat_gateway(NatGatewayId=nat_id)
    assert nat_state(endpoint, nat_id) == "deleted"

    before = service(endpoint)
    assert stable(before) and before["runningCount"] == 2  # CreateService alone: the seed
    ecs.update_service(
        cluster="demo-cluster", service="demo-api", taskDefinition=before["taskDefinition"],
        forceNewDeployment=True,
    )  # fmt: skip
    after = service(endpoint)
    assert stable(after) and after["runningCount"] == 2
    assert after["deployments"][0]["rolloutState"] == "COMPLETED"
    assert after["deployments"][0]["id"] != before["deployments"][0]["id"]

    assert transitions(endpoint) == []


# -- RDS ------------------------------------------------------------------------------------


def test_rds_resize_is_modifying_then_available(seeded: EnvironmentConfig) -> None:
    endpoint = seeded.aws.endpoint_url
    assert endpoint is not None
    set_factor(endpoint, 0.005)  # 1.5 s
    answer = client(endpoint, "rds").modify_db_instance(
        DBInstanceIdentifier="demo-db", DBInstanceClass="db.t4g.micro", ApplyImmediately=True
    )["DBInstance"]
    assert answer["DBInstanceClass"] == "db.t3.micro"
    assert answer["PendingModifiedValues"] == {"DBInstanceClass": "db.t4g.micro"}

    middle = db(endpoint)
    assert middle["DBInstanceStatus"] == "modifying"
    assert middle["DBInstanceClass"] == "db.t3.micro"
    assert middle["PendingModifiedValues"] == {"DBInstanceClass": "db.t4g.micro"}
    [pending] = transitions(endpoint)
    assert pending["service"] == "rds" and pending["id"] == "demo-db"
    assert pending["status"] == "modifying" and pending["cause"] == "ModifyDBInstance"
    assert pending["seconds"] == pytest.approx(1.5)

    end = until(lambda: db(endpoint), lambda d: d["DBInstanceStatus"] == "available")
    assert end["DBInstanceClass"] == "db.t4g.micro"
    assert not end.get("PendingModifiedValues")
    assert transitions(endpoint) == []


def test_rds_snapshot_is_creating_while_the_instance_backs_up(seeded: EnvironmentConfig):
    endpoint = seeded.aws.endpoint_url
    assert endpoint is not None
    rds = client(endpoint, "rds")
    set_factor(endpoint, 0.01)  # 1.2 s
    answer = rds.create_db_snapshot(DBInstanceIdentifier="demo-db", DBSnapshotIdentifier="pre")
    assert answer["DBSnapshot"]["Status"] == "creating"

    def snapshot() -> dict[str, Any]:
        return rds.describe_db_snapshots(DBSnapshotIdentifier="pre")["DBSnapshots"][0]

    assert snapshot()["Status"] == "creating"
    assert db(endpoint)["DBInstanceStatus"] == "backing-up"
    with pytest.raises(ClientError) as refused:  # as AWS: not while backing up
        rds.modify_db_instance(
            DBInstanceIdentifier="demo-db", DBInstanceClass="db.t4g.micro", ApplyImmediately=True
        )
    assert refused.value.response["Error"]["Code"] == "InvalidDBInstanceState"

    until(snapshot, lambda s: s["Status"] == "available")
    assert db(endpoint)["DBInstanceStatus"] == "available"
    assert db(endpoint)["DBInstanceClass"] == "db.t3.micro"  # the refused change never happened


# -- ElastiCache ----------------------------------------------------------------------------


def test_redis_resize_is_modifying_with_the_old_node_type(seeded: EnvironmentConfig) -> None:
    endpoint = seeded.aws.endpoint_url
    assert endpoint is not None
    set_factor(endpoint, 0.002)  # 1.2 s
    answer = client(endpoint, "elasticache").modify_replication_group(
        ReplicationGroupId="demo-redis", CacheNodeType="cache.t4g.micro", ApplyImmediately=True
    )["ReplicationGroup"]
    assert answer["Status"] == "modifying" and answer["CacheNodeType"] == "cache.t3.micro"

    middle = group(endpoint)
    assert middle["Status"] == "modifying" and middle["CacheNodeType"] == "cache.t3.micro"

    end = until(lambda: group(endpoint), lambda g: g["Status"] == "available")
    assert end["CacheNodeType"] == "cache.t4g.micro"


def test_redis_snapshot_is_creating_while_the_group_snapshots(seeded: EnvironmentConfig):
    endpoint = seeded.aws.endpoint_url
    assert endpoint is not None
    elasticache = client(endpoint, "elasticache")
    set_factor(endpoint, 0.01)  # 1.2 s
    answer = elasticache.create_snapshot(ReplicationGroupId="demo-redis", SnapshotName="pre")
    assert answer["Snapshot"]["SnapshotStatus"] == "creating"

    def snapshot() -> dict[str, Any]:
        return elasticache.describe_snapshots(SnapshotName="pre")["Snapshots"][0]

    assert snapshot()["SnapshotStatus"] == "creating"
    assert group(endpoint)["Status"] == "snapshotting"
    with pytest.raises(ClientError) as refused:
        elasticache.modify_replication_group(
            ReplicationGroupId="demo-redis", CacheNodeType="cache.t4g.micro", ApplyImmediately=True
        )
    assert refused.value.response["Error"]["Code"] == "InvalidReplicationGroupState"

    until(snapshot, lambda s: s["SnapshotStatus"] == "available")
    assert group(endpoint)["Status"] == "available"


# -- NAT gateways ---------------------------------------------------------------------------


def test_nat_gateway_is_pending_then_available_and_deleting_then_deleted(
    seeded: EnvironmentConfig,
) -> None:
    endpoint = seeded.aws.endpoint_url
    assert endpoint is not None
    ec2 = client(endpoint, "ec2")
    # create 9 s, delete 6 s: a CI machine at a load of 6 took over 1.8 s (a factor of 0.02)
    # between the create and the describe that should still see it pending
    set_factor(endpoint, 0.1)
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    created = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=eip)["NatGateway"]
    assert created["State"] == "pending"
    assert nat_state(endpoint, created["NatGatewayId"]) == "pending"
    until(lambda: nat_state(endpoint, created["NatGatewayId"]), lambda s: s == "available")

    demo = [{"Name": "tag:Environment", "Values": ["demo"]}]
    old = ec2.describe_nat_gateways(Filter=demo)["NatGateways"][0]["NatGatewayId"]
    ec2.delete_nat_gateway(NatGatewayId=old)
    assert nat_state(endpoint, old) == "deleting"
    until(lambda: nat_state(endpoint, old), lambda s: s == "deleted")


# -- ECS ------------------------------------------------------------------------------------


def test_ecs_new_revision_rolls_out_while_the_old_deployment_drains(seeded: EnvironmentConfig):
    endpoint = seeded.aws.endpoint_url
    assert endpoint is not None
    ecs = client(endpoint, "ecs")
    before = service(endpoint)
    definition = ecs.describe_task_definition(taskDefinition=before["taskDefinition"])[
        "taskDefinition"
    ]
    revision = ecs.register_task_definition(
        family=definition["family"],
        requiresCompatibilities=definition["requiresCompatibilities"],
        networkMode=definition["networkMode"],
        cpu=definition["cpu"],
        memory=definition["memory"],
        runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
        containerDefinitions=definition["containerDefinitions"],
    )["taskDefinition"]["taskDefinitionArn"]
    set_factor(endpoint, 0.02)  # 2.4 s

    answer = ecs.update_service(cluster="demo-cluster", service="demo-api", taskDefinition=revision)
    assert [d["status"] for d in answer["service"]["deployments"]] == ["PRIMARY", "ACTIVE"]

    middle = service(endpoint)
    primary, old = middle["deployments"]
    assert primary["status"] == "PRIMARY" and primary["taskDefinition"] == revision
    assert primary["rolloutState"] == "IN_PROGRESS" and primary["runningCount"] < 2
    assert old["status"] == "ACTIVE" and old["taskDefinition"] == before["taskDefinition"]
    assert middle["runningCount"] < middle["desiredCount"] == 2

    seen: set[int] = set()

    def probe() -> dict[str, Any]:
        svc = service(endpoint)
        seen.add(svc["deployments"][0]["runningCount"])
        return svc

    end = until(probe, stable)
    assert seen >= {0, 2} or seen >= {1, 2}  # it rose, it did not jump from nothing
    [deployment] = end["deployments"]
    assert deployment["id"] == primary["id"] and deployment["rolloutState"] == "COMPLETED"
    assert end["taskDefinition"] == revision and end["runningCount"] == 2


@pytest.mark.parametrize("factor", [0.0, 0.01])
def test_a_service_created_by_any_client_runs_its_desired_tasks(sandbox: str, factor: float):
    """Like Terraform's provider: CreateService only, no desiredCount nudge afterwards."""
    ecs = client(sandbox, "ecs")
    ecs.create_cluster(clusterName="tf")
    definition = ecs.register_task_definition(
        family="tf-api",
        containerDefinitions=[{"name": "api", "image": "nginx", "memory": 256}],
    )["taskDefinition"]["taskDefinitionArn"]
    set_factor(sandbox, factor)

    created = ecs.create_service(
        cluster="tf", serviceName="api", taskDefinition=definition, desiredCount=3
    )["service"]
    if factor:
        assert created["runningCount"] < 3
        assert created["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    end = until(lambda: service(sandbox, "tf", "api"), stable)
    assert end["runningCount"] == end["desiredCount"] == 3
    assert end["deployments"][0]["rolloutState"] == "COMPLETED"

    ecs.update_service(cluster="tf", service="api", desiredCount=5)
    if factor:
        assert service(sandbox, "tf", "api")["runningCount"] < 5
    end = until(lambda: service(sandbox, "tf", "api"), lambda s: s["runningCount"] == 5)
    assert stable(end) and end["desiredCount"] == 5

    ecs.update_service(cluster="tf", service="api", desiredCount=0)
    end = until(lambda: service(sandbox, "tf", "api"), lambda s: s["runningCount"] == 0)
    assert stable(end) and end["desiredCount"] == 0


# -- transitions that are not phasegate's doing ---------------------------------------------


def test_injected_transitions_last_real_seconds_even_at_factor_zero(seeded: EnvironmentConfig):
    endpoint = seeded.aws.endpoint_url
    assert endpoint is not None
    url = f"{endpoint}/_phasegate/transitions"
    specs = [
        {"service": "rds", "id": "demo-db", "status": "backing-up", "seconds": 1.5},
        {"service": "elasticache", "id": "demo-redis", "status": "snapshotting", "seconds": 1.5},
        {"service": "ecs", "id": "demo-cluster/demo-api", "seconds": 1.5},
    ]
    for spec in specs:
        answer = requests.post(url, json=spec, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["cause"] == "injected"
    assert {(t["service"], t["id"]) for t in transitions(endpoint)} == {
        ("rds", "demo-db"), ("elasticache", "demo-redis"), ("ecs", "demo-cluster/demo-api"),
    }  # fmt: skip

    assert db(endpoint)["DBInstanceStatus"] == "backing-up"
    assert group(endpoint)["Status"] == "snapshotting"
    svc = service(endpoint)
    assert len(svc["deployments"]) == 2 and svc["runningCount"] < svc["desiredCount"]
    with pytest.raises(ClientError) as refused:  # a nightly backup is under way
        client(endpoint, "rds").create_db_snapshot(
            DBInstanceIdentifier="demo-db", DBSnapshotIdentifier="now"
        )
    assert refused.value.response["Error"]["Code"] == "InvalidDBInstanceState"

    until(lambda: db(endpoint), lambda d: d["DBInstanceStatus"] == "available")
    until(lambda: group(endpoint), lambda g: g["Status"] == "available")
    until(lambda: service(endpoint), stable)
    assert transitions(endpoint) == []


def test_injected_transition_specs_are_checked(seeded: EnvironmentConfig) -> None:
    url = f"{seeded.aws.endpoint_url}/_phasegate/transitions"
    bad = [
        {"service": "rds", "id": "demo-db", "seconds": 0},
        {"service": "rds", "id": "demo-db"},
        {"service": "s3", "id": "bucket", "seconds": 1},
        {"service": "rds", "id": "demo-db", "seconds": 1, "colour": "red"},
    ]
    for spec in bad:
        assert requests.post(url, json=spec, timeout=10).status_code == 400, spec
    missing = requests.post(url, json={"service": "rds", "id": "nope", "seconds": 1}, timeout=10)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


def test_delete_completes_pending_transitions_and_a_reset_forgets_them(
    seeded: EnvironmentConfig,
) -> None:
    endpoint = seeded.aws.endpoint_url
    assert endpoint is not None
    set_factor(endpoint, 1.0)  # five minutes: only a DELETE ends it within the test
    client(endpoint, "rds").modify_db_instance(
        DBInstanceIdentifier="demo-db", DBInstanceClass="db.t4g.micro", ApplyImmediately=True
    )
    assert db(endpoint)["DBInstanceStatus"] == "modifying"
    requests.delete(f"{endpoint}/_phasegate/transitions", timeout=10).raise_for_status()
    done = db(endpoint)
    assert done["DBInstanceStatus"] == "available" and done["DBInstanceClass"] == "db.t4g.micro"
    assert requests.get(f"{endpoint}/_phasegate/latency", timeout=10).json()["factor"] == 1.0

    client(endpoint, "elasticache").modify_replication_group(
        ReplicationGroupId="demo-redis", CacheNodeType="cache.t4g.small", ApplyImmediately=True
    )
    assert len(transitions(endpoint)) == 1
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    assert transitions(endpoint) == []


# -- hold faults ----------------------------------------------------------------------------


def _calls(endpoint: str) -> list[dict[str, str]]:
    return requests.get(f"{endpoint}/_phasegate/calls", timeout=10).json()


def test_hold_fault_keeps_the_action_from_happening_and_blocks_nothing_else(
    seeded: EnvironmentConfig,
) -> None:
    endpoint = seeded.aws.endpoint_url
    assert endpoint is not None
    ec2 = client(endpoint, "ec2")
    nat_id = ec2.describe_nat_gateways()["NatGateways"][0]["NatGatewayId"]
    requests.delete(f"{endpoint}/_phasegate/calls", timeout=10).raise_for_status()
    fault = {"action": "DeleteNatGateway", "hold": 30, "times": 1}
    listed = requests.post(f"{endpoint}/_phasegate/faults", json=fault, timeout=10).json()
    assert listed[0]["code"] == "ServiceUnavailable" and listed[0]["status"] == 503

    outcome: dict[str, Any] = {}

    def delete() -> None:
        try:
            client(endpoint, "ec2", NO_RETRIES).delete_nat_gateway(NatGatewayId=nat_id)
        except ClientError as exc:
            outcome["error"] = exc.response

    held = threading.Thread(target=delete, daemon=True)
    held.start()
    until(lambda: _calls(endpoint), lambda c: {"service": "ec2", "action": "DeleteNatGateway"} in c)

    # Held: other calls go through meanwhile, and the NAT gateway is untouched.
    assert nat_state(endpoint, nat_id) == "available"
    assert db(endpoint)["DBInstanceStatus"] == "available"
    assert held.is_alive()

    requests.delete(f"{endpoint}/_phasegate/faults", timeout=10).raise_for_status()
    held.join(timeout=10)
    assert not held.is_alive()
    assert outcome["error"]["Error"]["Code"] == "ServiceUnavailable"
    assert outcome["error"]["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert nat_state(endpoint, nat_id) == "available"  # never passed to moto


def test_hold_fault_ends_by_itself_after_hold_seconds(seeded: EnvironmentConfig) -> None:
    endpoint = seeded.aws.endpoint_url
    assert endpoint is not None
    fault = {"action": "ModifyDBInstance", "hold": 0.2, "times": 1}
    requests.post(f"{endpoint}/_phasegate/faults", json=fault, timeout=10).raise_for_status()
    with pytest.raises(ClientError) as failed:
        client(endpoint, "rds", NO_RETRIES).modify_db_instance(
            DBInstanceIdentifier="demo-db", DBInstanceClass="db.t4g.micro", ApplyImmediately=True
        )
    assert failed.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert db(endpoint)["DBInstanceClass"] == "db.t3.micro"
    # times: 1 -- the next one goes through.
    client(endpoint, "rds", NO_RETRIES).modify_db_instance(
        DBInstanceIdentifier="demo-db", DBInstanceClass="db.t4g.micro", ApplyImmediately=True
    )
    assert db(endpoint)["DBInstanceClass"] == "db.t4g.micro"


def test_a_client_killed_while_held_never_made_the_change(seeded: EnvironmentConfig) -> None:
    """The pattern for crash tests: hold, wait for the call, SIGKILL, clear the faults."""
    endpoint = seeded.aws.endpoint_url
    assert endpoint is not None
    nat_id = client(endpoint, "ec2").describe_nat_gateways()["NatGateways"][0]["NatGatewayId"]
    requests.delete(f"{endpoint}/_phasegate/calls", timeout=10).raise_for_status()
    fault = {"action": "DeleteNatGateway", "hold": 60, "times": -1}
    requests.post(f"{endpoint}/_phasegate/faults", json=fault, timeout=10).raise_for_status()
    script = (
        "import boto3, sys; boto3.client('ec2', region_name='us-east-1', "
        "endpoint_url=sys.argv[1]).delete_nat_gateway(NatGatewayId=sys.argv[2])"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, endpoint, nat_id], env={**os.environ})
    try:
        until(
            lambda: _calls(endpoint),
            lambda c: {"service": "ec2", "action": "DeleteNatGateway"} in c,
        )
        assert proc.poll() is None  # held inside the call
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    requests.delete(f"{endpoint}/_phasegate/faults", timeout=10).raise_for_status()
    assert nat_state(endpoint, nat_id) == "available"


def test_fault_specs_are_checked(sandbox: str) -> None:
    url = f"{sandbox}/_phasegate/faults"
    for bad in ({"action": "X"}, {"action": "X", "hold": -1}, {"hold": 1}, {"action": "X", "q": 1}):
        assert requests.post(url, json=bad, timeout=10).status_code == 400, bad
    assert requests.get(url, timeout=10).json() == []


# -- phasegate sandbox up --latency ---------------------------------------------------------


def test_cli_up_latency_sets_the_daemons_factor_and_seeds_a_settled_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHASEGATE_HOME", str(tmp_path / "home"))
    port = free_port()
    try:
        up = CliRunner().invoke(cli.app, ["up", "--port", str(port), "--latency", "0.5"])
        assert up.exit_code == 0, up.output
        endpoint = f"http://127.0.0.1:{port}"
        assert json.loads(state_path().read_text())["port"] == port
        got = requests.get(f"{endpoint}/_phasegate/latency", timeout=10).json()
        assert got["factor"] == 0.5
        # The seed ran at factor 0: today's architecture, running and available.
        assert transitions(endpoint) == []
        config = load_environment("demo")
        assert config.aws.endpoint_url == endpoint
        ec2 = client(endpoint, "ec2")
        assert {n["State"] for n in ec2.describe_nat_gateways()["NatGateways"]} == {"available"}
        assert stable(service(endpoint))
        bad = CliRunner().invoke(cli.app, ["up", "--latency", "-1"])
        assert bad.exit_code == 2
    finally:
        stop_server()  # the local Prefect server `sandbox up` started in this home
        stop_sandbox(timeout=5)
