"""Phase 2's config fields: defaults, and bad values refused by the CLI with exit 2 in one line
naming the file and the field, before any AWS call (so nothing changes)."""

from pathlib import Path

import pytest
import requests
from conftest import write_environment
from typer.testing import CliRunner

from phasegate.cli import app
from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.errors import ConfigError


def test_defaults_are_the_seed_s(seeded: EnvironmentConfig) -> None:
    scaling, monitoring, database = seeded.scaling, seeded.monitoring, seeded.database
    assert (scaling.min_capacity, scaling.max_capacity, scaling.cpu_target_percent) == (2, 6, 60)
    assert (monitoring.monthly_budget_usd, monitoring.budget_margin_percent) == (None, 20)
    assert (database.reboot, database.memory_per_connection_mib) == ("never", 9.09)


@pytest.mark.parametrize(
    ("section", "value", "field", "says"),
    [
        ("scaling", {"min_capacity": 7, "max_capacity": 6}, "scaling",
         "min_capacity (7) is above max_capacity (6)"),
        ("targets", {"asg_min": 6}, "targets", "asg_min (6) is above asg_max (5)"),
        ("scaling", {"cpu_target_percent": 150}, "scaling.cpu_target_percent", "100"),
        ("scaling", {"cpu_target_percent": 0}, "scaling.cpu_target_percent", "1"),
        ("monitoring", {"emails": ["ops@example.com", "not-an-email"]}, "monitoring.emails",
         "'not-an-email' is not an email address"),
        ("monitoring", {"https_endpoints": ["http://insecure.example.com"]},
         "monitoring.https_endpoints", "is not an https:// URL"),
        ("monitoring", {"monthly_budget_usd": 0}, "monitoring.monthly_budget_usd", "0"),
        ("monitoring", {"monthly_budget_usd": -5}, "monitoring.monthly_budget_usd", "-5"),
        ("database", {"reboot": "always"}, "database.reboot", "'always'"),
    ],
)  # fmt: skip
def test_bad_values_name_the_file_and_the_field(
    sandbox: str, tmp_path: Path, section: str, value: dict, field: str, says: str
) -> None:
    path = write_environment(tmp_path, "demo", sandbox, **{section: value})
    with pytest.raises(ConfigError) as bad:
        parse_environment(path)
    assert bad.value.exit_code == 2
    [line] = str(bad.value).splitlines()
    assert line.startswith(f"{path}: {field}: "), line
    assert says in line


def test_run_with_a_bad_value_exits_2_in_one_line_and_calls_no_aws(
    sandbox: str, tmp_path: Path
) -> None:
    path = write_environment(tmp_path, "demo", sandbox, scaling={"min_capacity": 7})
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()

    result = CliRunner().invoke(app, ["run", str(path), "--phase", "2"])

    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"error: {path}: scaling: min_capacity (7) is above max_capacity (6)"
    )
    assert requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json() == []


def test_a_budget_tag_outside_discovery_is_named(sandbox: str, tmp_path: Path) -> None:
    path = write_environment(tmp_path, "demo", sandbox, monitoring={"budget_tag": "Team"})
    result = CliRunner().invoke(app, ["plan", str(path), "--phase", "2"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"error: {path}: monitoring.budget_tag: 'Team' is not one of discovery.tags (Environment); "
        "the budget filters the environment's cost by one of them"
    )
