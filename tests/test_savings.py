"""Savings realized: the ledger's completion times and estimates against a Cost Explorer bill
served by the sandbox over HTTP (moto's queued GetCostAndUsage results)."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import requests
from conftest import write_environment
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from typer.testing import CliRunner

from flows.migration import migration
from phasegate.checkpoints import checkpoint_storage
from phasegate.cli import app
from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.ledger import Ledger
from phasegate.report import MigrationFailed
from phasegate.sandbox.billing import cost_and_usage_result, queue_cost_and_usage
from phasegate.savings import SavingsReport, step_component, tag_filter
from phasegate.steps import Change, Record, Reversibility

MONTH = 730 / 24  # days in the price table's month
CENT = 0.005

# Daily bill by service before and after the phase (4 days each side, alternating days).
BEFORE = [
    {
        "Amazon Elastic Container Service": 1.10,
        "Amazon Relational Database Service": 0.52,
        "Amazon ElastiCache": 0.82,
        "EC2 - Other": 2.90,
        "Amazon Virtual Private Cloud": 0.48,
        "Amazon Elastic Load Balancing": 0.73,
        "AmazonCloudWatch": 0.05,
    },
    {
        "Amazon Elastic Container Service": 1.26,
        "Amazon Relational Database Service": 0.50,
        "Amazon ElastiCache": 0.81,
        "EC2 - Other": 2.90,
        "Amazon Virtual Private Cloud": 0.48,
        "Amazon Elastic Load Balancing": 0.73,
        "AmazonCloudWatch": 0.05,
    },
]
AFTER = [
    {
        "Amazon Elastic Container Service": 0.95,
        "Amazon Relational Database Service": 0.46,
        "Amazon ElastiCache": 0.77,
        "Amazon Virtual Private Cloud": 0.24,
        "Amazon Elastic Load Balancing": 0.73,
        "AmazonCloudWatch": 0.05,
    }
] * 2
# Phase 1's applied changes as the plan estimated them (monthly_cost_delta, dollars).
DELTAS = {
    "nat.remove": -95.50,
    "compute.graviton": -7.20,
    "database.resize": -1.46,
    "cache.resize": -1.46,
}


def _config(sandbox: str, tmp_path: Path) -> EnvironmentConfig:
    return parse_environment(write_environment(tmp_path, "demo", sandbox))


def _applied(config: EnvironmentConfig, finished: datetime) -> None:
    ledger = Ledger(config)
    for step, delta in DELTAS.items():
        change = Change(
            step=step,
            summary=f"{step} for the test",
            actions=["change"],
            monthly_cost_delta=delta,
            reversibility=Reversibility(
                restart_needed=False, rollback_possible=True, expected_disruption="none"
            ),
        )
        ledger.append(
            Record(
                environment=config.name,
                phase=1,
                step=step,
                key=f"{step}-test",
                outcome="applied",
                change=change,
                started_at=finished - timedelta(minutes=5),
                finished_at=finished,
            )
        )


def _bill(done: date, days: int) -> dict[date, dict[str, float]]:
    bill = {done - timedelta(days=i + 1): BEFORE[i % 2] for i in range(days)}
    bill |= {done + timedelta(days=i + 1): AFTER[i % 2] for i in range(days)}
    bill[done] = {"EC2 - Other": 50.0}  # the completion day is mixed: never counted
    bill[done - timedelta(days=days + 3)] = {"EC2 - Other": 99.0}  # not asked for
    return bill


def _savings(config: EnvironmentConfig, *args: str) -> SavingsReport:
    out = CliRunner().invoke(app, ["savings", str(config.source), "--json", *args])
    assert out.exit_code == 0, out.output
    return SavingsReport.model_validate_json(out.stdout)


def test_estimated_against_realized_per_component(sandbox: str, tmp_path: Path) -> None:
    config = _config(sandbox, tmp_path)
    finished = datetime.now(UTC) - timedelta(days=10)
    _applied(config, finished)
    queue_cost_and_usage(sandbox, cost_and_usage_result(_bill(finished.date(), 4)))

    phase = _savings(config, "--days", "4").phases[0]

    assert phase.status == "measured"
    assert phase.before == (finished.date() - timedelta(days=4), finished.date() - timedelta(1))
    assert phase.after == (finished.date() + timedelta(days=1), finished.date() + timedelta(4))
    got = {c.component: (c.estimated, c.realized) for c in phase.components}
    # realized = (average daily before - average daily after) x 730/24
    want = {
        "Compute": (7.20, ((1.10 + 1.26) / 2 - 0.95) * MONTH),  # 6.996
        "Database": (1.46, ((0.52 + 0.50) / 2 - 0.46) * MONTH),  # 1.521
        "Cache": (1.46, ((0.82 + 0.81) / 2 - 0.77) * MONTH),  # 1.369
        "Load Balancer": (0.0, 0.0),
        "NAT Gateway": (95.50, 2.90 * MONTH),  # 88.208: EC2 - Other gone
        "Public IPv4": (0.0, (0.48 - 0.24) * MONTH),  # 7.30: the NAT EIPs released
        "Other": (0.0, 0.0),  # CloudWatch, unchanged
    }
    assert set(got) == set(want)
    for component, (estimated, realized) in want.items():
        assert got[component][0] == pytest.approx(estimated, abs=CENT), component
        assert got[component][1] == pytest.approx(realized, abs=CENT), component

    table = CliRunner().invoke(
        app, ["savings", str(config.source), "--days", "4"], env={"COLUMNS": "160"}
    )
    assert table.exit_code == 0
    assert "NAT Gateway" in table.stdout and "$88.21" in table.stdout


def test_a_phase_completed_today_has_no_billing_data_yet(sandbox: str, tmp_path: Path) -> None:
    config = _config(sandbox, tmp_path)
    _applied(config, datetime.now(UTC))
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10)

    out = CliRunner().invoke(app, ["savings", str(config.source)], env={"COLUMNS": "160"})

    assert out.exit_code == 0, out.output
    assert "no billing data yet" in out.stdout
    calls = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    assert not [c for c in calls if c["action"] == "GetCostAndUsage"]  # no $0.01 spent


def test_no_bill_for_past_days_says_so_and_exits_0(sandbox: str, tmp_path: Path) -> None:
    config = _config(sandbox, tmp_path)
    _applied(config, datetime.now(UTC) - timedelta(days=10))

    phase = _savings(config).phases[0]

    assert phase.status == "no billing data"
    assert phase.detail.startswith("no billing data yet: Cost Explorer has no cost tagged")
    assert [c.estimated for c in phase.components] == [7.20, 1.46, 1.46, 95.50]


def test_nothing_applied_is_not_completed(sandbox: str, tmp_path: Path) -> None:
    phase = _savings(_config(sandbox, tmp_path)).phases[0]
    assert (phase.status, phase.detail) == (
        "not completed",
        "no change applied since the last rollback",
    )


def test_the_bill_is_filtered_by_every_discovery_tag() -> None:
    one = {"Tags": {"Key": "Environment", "Values": ["demo"], "MatchOptions": ["EQUALS"]}}
    assert tag_filter({"Environment": "demo"}) == one
    two = tag_filter({"Environment": "demo", "Team": "ai"})
    assert two["And"][0] == one and two["And"][1]["Tags"]["Key"] == "Team"


@pytest.mark.usefixtures("prefect_client_env")
def test_the_migration_report_says_no_billing_data_yet(sandbox: str, tmp_path: Path) -> None:
    name = "savings-report"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%a").lower()
    window = {"days": [tomorrow], "start": "02:00", "duration_minutes": 60}
    config = parse_environment(
        write_environment(
            tmp_path, name, sandbox, schedule={"windows": {"w": window}, "phase_windows": {1: "w"}}
        )
    )
    with checkpoint_storage(config), pytest.raises(MigrationFailed):
        migration(str(config.source), phases=[1], wait=False)  # refused: outside its window

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"migration-{name}"])),
            sort=ArtifactSort.CREATED_DESC,
        )
    report = str(artifacts[0].data)
    assert "## Savings: estimated vs realized (a month)\n\nno billing data yet." in report
    assert "| 1 | no change applied since the last rollback | | |" in report


def test_changes_before_a_drift_or_rollback_no_longer_count(sandbox: str, tmp_path: Path) -> None:
    config = _config(sandbox, tmp_path)
    ledger = Ledger(config)
    earlier = datetime.now(UTC) - timedelta(days=20)
    _applied(config, earlier)  # every step applied 20 days ago...
    for step in DELTAS:  # ...then found changed by hand (drift), and applied again 10 days ago
        head = ledger.head(1, step)
        assert head is not None
        ledger.append(head.model_copy(update={"outcome": "drift", "change": None}))
    _applied(config, earlier + timedelta(days=10))

    phase = _savings(config).phases[0]

    assert phase.completed_at == earlier + timedelta(days=10)
    assert [c.estimated for c in phase.components] == [7.20, 1.46, 1.46, 95.50]  # not twice
    for step in DELTAS:
        head = ledger.head(1, step)
        assert head is not None
        ledger.append(head.model_copy(update={"outcome": "rolled_back", "change": None}))
    assert _savings(config).phases[0].status == "not completed"


@pytest.mark.parametrize(
    ("step_id", "component"),
    [
        ("nat.remove", "NAT Gateway"),
        ("spot.enable", "Compute"),
        ("regions.expand.database", "Database"),
        ("regions.expand.alb", "Load Balancer"),
        ("regions.expand.dns", "Other"),
        ("cdn.enable", "Other"),
    ],
)
def test_a_steps_estimate_is_set_against_its_services_component(
    step_id: str, component: str
) -> None:
    """Cost Explorer bills the second region's replica as RDS, so its estimate is Database's."""
    assert step_component(step_id) == component
