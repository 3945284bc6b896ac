"""Orchestration overhead: phase 1 through phasegate against a plain boto3 runbook.

Two identical environments are seeded in one in-process sandbox. The runbook makes phase 1's
14 mutating calls on one of them the way a hand-written script would (discover once, snapshot,
modify, endpoint, routes, NAT gateways, addresses, the ARM64 revision), with no checkpoint,
ledger, verify or approval. phasegate runs phase 1 on the other, and then the whole
`phasegate run ENV --phase 1 --auto-approve` command runs in a subprocess on a third
environment against the one local Prefect server (`phasegate server up`, started once
beforehand, as `sandbox up` and `demo` do). Printed from this one run, side by side:

- the runbook's wall time;
- phase 1's steps through phasegate (first step start to last step end, from the ledger) and
  its ratio to the runbook (target <= 1.3), with the overhead per step in ms (target <= 50);
- the whole command's wall time (plan, approval, steps, cost snapshots, report) with its
  health gate cut to one round of one GetMetricData call, and its ratio to the runbook
  (target <= 5).

    .venv/bin/python bench/overhead.py
"""

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from prefect.settings import PREFECT_API_URL, temporary_settings
from sandbox_env import free_port

from flows.phase1 import phase1
from phasegate.aws import AwsClients
from phasegate.checkpoints import checkpoint_storage
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.inventory import discover
from phasegate.ledger import Ledger
from phasegate.local_server import start_server, stop_server
from phasegate.sandbox.app import SandboxServer
from phasegate.sandbox.seed import seed_environment
from phasegate.sandbox.simulator import WorkloadSimulator
from tasks.registry import ordered

REPO = Path(__file__).resolve().parent.parent
STEPS_TARGET, PER_STEP_MS_TARGET, COMMAND_TARGET = 1.3, 50.0, 5.0


def runbook(config: EnvironmentConfig) -> None:
    """Phase 1 as a plain boto3 script: the same 14 mutating calls, no bookkeeping."""
    clients = AwsClients(config.aws)
    inv = discover(config, clients)
    [db] = inv.databases
    [cache] = inv.caches
    [svc] = inv.services
    [vpc] = inv.vpcs
    clients.rds.create_db_snapshot(
        DBInstanceIdentifier=db.identifier, DBSnapshotIdentifier=f"{db.identifier}-runbook"
    )
    clients.elasticache.create_snapshot(
        ReplicationGroupId=cache.id, SnapshotName=f"{cache.id}-runbook"
    )
    clients.rds.modify_db_instance(
        DBInstanceIdentifier=db.identifier, DBInstanceClass="db.t4g.micro", ApplyImmediately=True
    )
    clients.elasticache.modify_replication_group(
        ReplicationGroupId=cache.id, CacheNodeType="cache.t4g.micro", ApplyImmediately=True
    )
    public = [s.id for s in vpc.subnets if s.public]
    clients.ecs.update_service(
        cluster=svc.cluster,
        service=svc.name,
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": public,
                "securityGroups": svc.security_groups,
                "assignPublicIp": "ENABLED",
            }
        },
    )
    nat_tables = [t for t in vpc.route_tables if any(r.target_type == "nat" for r in t.routes)]
    clients.ec2.create_vpc_endpoint(
        VpcId=vpc.id,
        ServiceName=f"com.amazonaws.{config.aws.region}.s3",
        RouteTableIds=[t.id for t in nat_tables],
    )
    for table in nat_tables:
        clients.ec2.delete_route(RouteTableId=table.id, DestinationCidrBlock="0.0.0.0/0")
    for nat in inv.nat_gateways:
        clients.ec2.delete_nat_gateway(NatGatewayId=nat.id)
    for nat in inv.nat_gateways:
        for allocation in nat.allocation_ids:
            clients.ec2.release_address(AllocationId=allocation)
    definition = clients.ecs.describe_task_definition(taskDefinition=svc.task_definition)[
        "taskDefinition"
    ]
    keep = ("family", "containerDefinitions", "cpu", "memory", "networkMode")
    revision = clients.ecs.register_task_definition(
        **{k: definition[k] for k in keep if k in definition},
        requiresCompatibilities=["FARGATE"],
        runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
    )["taskDefinition"]["taskDefinitionArn"]
    clients.ecs.update_service(cluster=svc.cluster, service=svc.name, taskDefinition=revision)


def write_config(folder: Path, name: str, url: str) -> Path:
    path = folder / f"{name}.yaml"
    data = {
        "name": name,
        "tier": "dev",
        "aws": {"region": "us-east-1", "endpoint_url": url},
        "discovery": {"tags": {"Environment": name}},
        "executor": {"result_storage": str(folder / "results")},
        "gates": {"interval_seconds": 0.1, "count": 1, "lookback_minutes": 5},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def steps_span(config: EnvironmentConfig) -> float:
    """First step start to last step end of phase 1, from the ledger's applied Records."""
    ledger = Ledger(config)
    records = [r for step in ordered(1) for r in ledger.chain(1, step)]
    return (
        max(r.finished_at for r in records) - min(r.started_at for r in records)
    ).total_seconds()


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = SandboxServer(free_port()).start()
    folder = Path(os.environ["PHASEGATE_HOME"]) / "bench-envs"
    folder.mkdir(exist_ok=True)
    clients = AwsClients(AwsSettings(endpoint_url=server.url))
    names = ["plain", "flow", "command"]
    for index, name in enumerate(names, start=1):
        seed_environment(clients, name, index)
    configs = {n: parse_environment(write_config(folder, n, server.url)) for n in names}
    simulator = WorkloadSimulator(lambda: [configs["command"]], tick_seconds=0.5).start()
    prefect = start_server()
    env = {**os.environ, "PREFECT_API_URL": prefect.api_url}
    try:
        start = time.perf_counter()
        runbook(configs["plain"])
        plain = time.perf_counter() - start

        start = time.perf_counter()
        with (
            temporary_settings({PREFECT_API_URL: prefect.api_url}),
            checkpoint_storage(configs["flow"]),
        ):
            phase1(str(configs["flow"].source))
        flow_wall = time.perf_counter() - start
        steps = steps_span(configs["flow"])

        argv = [sys.executable, "-m", "phasegate.cli", "run", str(configs["command"].source)]
        start = time.perf_counter()
        subprocess.run(
            [*argv, "--phase", "1", "--auto-approve"], env=env, cwd=REPO, check=True,
            capture_output=True,
        )  # fmt: skip
        command = time.perf_counter() - start
    finally:
        simulator.stop()
        stop_server()
        server.stop()
    count = len(ordered(1))
    per_step_ms = (steps - plain) / count * 1000
    print(f"plain boto3 runbook (14 mutating calls):           {plain:6.2f} s")
    print(f"phasegate phase 1 flow, wall:                      {flow_wall:6.2f} s")
    print(f"phasegate phase 1 steps, first start to last end:  {steps:6.2f} s")
    print(f"`phasegate run --phase 1` command, local server up: {command:6.2f} s")
    print(
        f"steps / runbook:   {steps / plain:6.2f} (target <= {STEPS_TARGET}); "
        f"overhead per step {per_step_ms:.0f} ms over {count} steps "
        f"(target <= {PER_STEP_MS_TARGET:.0f})"
    )
    print(f"command / runbook: {command / plain:6.2f} (target <= {COMMAND_TARGET}; gate: 1 round)")
    met = steps / plain <= STEPS_TARGET and command / plain <= COMMAND_TARGET
    return 0 if met and per_step_ms <= PER_STEP_MS_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
