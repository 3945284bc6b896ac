"""The comparison table: each alternative's arithmetic on a fixed inventory, written out by hand
(the formula beside each figure, at the us-east-1 table's rates), and the demo environment
in the sandbox against the seed's ranges.
"""

import json
from pathlib import Path

import pytest
from conftest import free_port
from test_cost import _service, today
from typer.testing import CliRunner

from phasegate.aws import AwsClients
from phasegate.cli import app
from phasegate.compare import Comparison, compare_alternatives
from phasegate.config import AwsSettings, EnvironmentConfig
from phasegate.cost import load_price_table
from phasegate.sandbox.seed import seed_environment
from phasegate.sandbox.server import SANDBOX_USAGE
from phasegate.sandbox.simulator import HEALTHY_LATENCY_SECONDS, REQUESTS_PER_MINUTE

CENT = 0.005
USAGE = {"requests_per_month": 43_800_000, "avg_duration_ms": 120, "active_hours_per_day": 8}


def _config(**usage: float) -> EnvironmentConfig:
    return EnvironmentConfig.model_validate(
        {
            "name": "demo",
            "tier": "dev",
            "discovery": {"tags": {"Environment": "demo"}},
            "usage": usage,
        }
    )


def _compare(**usage: float) -> Comparison:
    return compare_alternatives(today(), _config(**usage), load_price_table("us-east-1"))


def _column(comparison: Comparison, key: str) -> dict[str, float | None]:
    alt = next(a for a in comparison.alternatives if a.key == key)
    return {**{c.component: c.monthly for c in alt.cells}, "Total": alt.total}


def _close(got: dict[str, float | None], want: dict[str, float]) -> None:
    for row, value in want.items():
        assert got[row] == pytest.approx(value, abs=CENT), row


# Rows every column of the fixed inventory shares when it keeps today's shape:
DB_T3 = 730 * 0.018 + 20 * 0.115  # db.t3.micro hours + 20 GB gp3 = 15.44
DB_T4G = 730 * 0.016 + 20 * 0.115  # db.t4g.micro = 13.98
CACHE_T3 = 2 * 730 * 0.017  # 2 x cache.t3.micro = 24.82
CACHE_T4G = 2 * 730 * 0.016  # 2 x cache.t4g.micro = 23.36
ALB = 730 * 0.0225 + 1 * 730 * 0.008  # ALB hours + 1 LCU average = 22.265
NAT = 2 * 730 * 0.045 + 500 * 0.045  # 2 gateways + 500 GB processed = 88.2


def test_fargate_x86_and_arm64_as_sized_today() -> None:
    result = _compare()
    # 2 tasks x 0.5 vCPU x 730 h x vCPU rate + 2 tasks x 1 GB x 730 h x GB rate
    x86 = 2 * 0.5 * 730 * 0.04048 + 2 * 1 * 730 * 0.004445  # 36.04
    arm = 2 * 0.5 * 730 * 0.03238 + 2 * 1 * 730 * 0.00356  # 28.84
    ipv4 = (2 + 2) * 730 * 0.005  # 2 NAT EIPs + 2 ALB nodes = 14.60
    common = {"Database": DB_T3, "Cache": CACHE_T3, "Load Balancer": ALB, "NAT Gateway": NAT}
    _close(_column(result, "fargate-x86"), {"Compute": x86, **common, "Total": 201.37})
    _close(_column(result, "fargate-arm64"), {"Compute": arm, **common, "Total": 194.16})
    assert _column(result, "fargate-x86")["Public IPv4"] == pytest.approx(ipv4)


def test_ec2_asg_carries_todays_vcpu_and_memory_without_nat() -> None:
    result = _compare()
    # today 2 x 0.5 vCPU = 1 vCPU and 2 x 1 GB = 2 GB; t4g.medium is 2 vCPU / 4 GB:
    # max(ceil(1/2), ceil(2/4), asg_min 1) = 1 instance x 730 h x $0.0336
    compute = 1 * 730 * 0.0336  # 24.53
    ipv4 = (2 + 1) * 730 * 0.005  # 2 ALB nodes + 1 instance in a public subnet = 10.95
    _close(
        _column(result, "ec2-asg"),
        {
            "Compute": compute,
            "Database": DB_T4G,
            "Cache": CACHE_T4G,
            "Load Balancer": ALB,
            "NAT Gateway": 0.0,
            "Public IPv4": ipv4,
            "Total": 95.08,
        },
    )
    alt = next(a for a in result.alternatives if a.key == "ec2-asg")
    assert any("-> 1 (targets.asg_min 1)" in i for i in alt.cell("Compute").inputs)


def test_ec2_asg_sizes_by_the_scarcer_of_vcpu_and_memory() -> None:
    big = today().model_copy(update={"services": [_service(desired=4, cpu=1024, memory=4096)]})
    result = compare_alternatives(big, _config(), load_price_table("us-east-1"))
    # 4 vCPU / 2 = 2 instances, 16 GB / 4 = 4 instances: memory decides, 4 x 730 h x $0.0336
    _close(_column(result, "ec2-asg"), {"Compute": 4 * 730 * 0.0336})  # 98.11


def test_lambda_from_requests_duration_and_memory_with_the_vpc_costs() -> None:
    result = _compare(**USAGE)
    # 43.8 M requests x $0.20/M + 43.8e6 x 0.120 s x 1 GB (today's task memory) x $0.0000133334
    compute = 43.8 * 0.20 + 43.8e6 * 0.120 * 1.0 * 0.0000133334  # 8.76 + 70.08 = 78.84
    gateway = 43.8 * 1.00  # HTTP API, first tier = 43.80
    ipv4 = 2 * 730 * 0.005  # the NAT gateways' EIPs; no ALB = 7.30
    _close(
        _column(result, "lambda"),
        {
            "Compute": compute,
            "Database": DB_T3,
            "Cache": CACHE_T3,
            "Load Balancer": gateway,
            "NAT Gateway": NAT,
            "Public IPv4": ipv4,
            "Total": 258.40,
        },
    )
    alt = next(a for a in result.alternatives if a.key == "lambda")
    assert any("15-minute" in n for n in alt.notes)
    assert any("cold start" in n for n in alt.notes)


def test_lambda_memory_from_config_wins_over_the_task_size() -> None:
    result = _compare(**USAGE, lambda_memory_mb=512)
    compute = 43.8 * 0.20 + 43.8e6 * 0.120 * 0.5 * 0.0000133334  # 8.76 + 35.04 = 43.80
    _close(_column(result, "lambda"), {"Compute": compute})


def test_eks_spot_nodes_plus_the_cluster_fee() -> None:
    result = _compare()
    # cluster 730 h x $0.10 + 1 t4g.medium x 730 h x $0.0336 x (1 - 0.6 Spot discount)
    compute = 730 * 0.10 + 730 * 0.0336 * 0.4  # 73 + 9.81 = 82.81
    _close(
        _column(result, "eks-spot"),
        {"Compute": compute, "Database": DB_T4G, "NAT Gateway": 0.0, "Total": 153.37},
    )
    alt = next(a for a in result.alternatives if a.key == "eks-spot")
    assert any("Kubernetes" in n for n in alt.notes)


def test_app_runner_from_active_and_provisioned_instance_hours() -> None:
    result = _compare(**USAGE)
    active = 8 * 730 / 24  # 243.33 h a month
    # 2 instances x [active h x (0.5 vCPU x $0.064 + 1 GB x $0.007) + idle h x 1 GB x $0.007]
    compute = 2 * (active * (0.5 * 0.064 + 1 * 0.007) + (730 - active) * 1 * 0.007)  # 25.79
    _close(
        _column(result, "app-runner"),
        {"Compute": compute, "Load Balancer": 0.0, "NAT Gateway": NAT, "Total": 161.55},
    )


def test_a_missing_input_names_the_field_and_never_guesses() -> None:
    result = _compare()
    lam = next(a for a in result.alternatives if a.key == "lambda")
    assert lam.cell("Compute").monthly is None
    assert lam.cell("Compute").missing == ["usage.requests_per_month", "usage.avg_duration_ms"]
    assert lam.cell("Load Balancer").missing == ["usage.requests_per_month"]
    assert lam.total is None
    runner = next(a for a in result.alternatives if a.key == "app-runner")
    assert runner.cell("Compute").missing == ["usage.active_hours_per_day"]
    assert any(n.startswith("App Runner: no total until usage.active") for n in result.closing)


def test_sandbox_usage_is_the_simulators_traffic() -> None:
    assert SANDBOX_USAGE["requests_per_month"] == REQUESTS_PER_MINUTE * 60 * 730
    assert SANDBOX_USAGE["avg_duration_ms"] == HEALTHY_LATENCY_SECONDS * 1000


def test_demo_environment_lands_in_the_seeds_ranges(sandbox: str, tmp_path: Path) -> None:
    seed_environment(AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox)), "demo", 1)
    path = tmp_path / "demo.yaml"
    path.write_text(
        json.dumps(
            {
                "name": "demo",
                "tier": "dev",
                "aws": {"region": "us-east-1", "endpoint_url": sandbox},
                "discovery": {"tags": {"Environment": "demo"}},
                "usage": SANDBOX_USAGE,
            }
        )
    )
    out = CliRunner().invoke(app, ["compare", str(path), "--json"])
    assert out.exit_code == 0, out.output
    result = Comparison.model_validate_json(out.stdout)
    totals = {a.key: a.total for a in result.alternatives}
    assert 80 <= totals["ec2-asg"] <= 125
    assert 200 <= totals["fargate-x86"] <= 255
    for key, seed in {"lambda": (45, 90), "eks-spot": (90, 135), "app-runner": (80, 120)}.items():
        title = next(a.title for a in result.alternatives if a.key == key)
        outside = not seed[0] <= totals[key] <= seed[1]
        assert outside == any(n.startswith(f"{title}: $") for n in result.closing), key
    assert result.closing[-1].startswith("The seed's numbers are hand estimates")

    table = CliRunner().invoke(app, ["compare", str(path)], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert "EC2 ASG t4g.medium" in table.stdout and "cluster-hour" in table.stdout


def test_compare_of_an_unknown_environment_is_one_line_exit_2(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["compare", str(tmp_path / "nope.yaml")])
    assert out.exit_code == 2
    assert "nope.yaml" in out.stderr and "Traceback" not in out.output


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("prefect_client_env")
def test_the_demo_ends_with_the_comparison_beside_the_before_after_table() -> None:
    out = CliRunner().invoke(
        app, ["demo", "--port", str(free_port()), "--stop"], env={"COLUMNS": "200"}
    )
    assert out.exit_code == 0, out.output
    text = out.stdout
    migration, comparison = text.index("Migration of demo"), text.index("Alternatives for demo")
    assert migration < comparison < text.index("Savings of demo")
    table = text[comparison:]
    for column in ("ECS Fargate x86", "EC2 ASG t4g.medium", "Lambda + API Gateway", "App Runner"):
        assert column in table.splitlines()[2], column
    total = next(line for line in table.splitlines() if line.startswith("│ Total"))
    assert "$201.37" in total and "$95.08" in total  # the before inventory, as test_cost's
    assert "is above the seed's" in table  # the closing note under the table
    assert "no billing data yet" in text[text.index("Savings of demo") :]
