"""The fleet's policy without Prefect: settings and their errors, selectors, waves, max_errors,
`--tiers`, and `phasegate sandbox up --tiers` writing each environment with its tier."""

from pathlib import Path

import pytest
import yaml
from conftest import free_port, write_environment
from typer.testing import CliRunner

from phasegate.cli import app
from phasegate.config import EnvironmentConfig, load_environment, parse_environment
from phasegate.errors import ConfigError
from phasegate.fleet import (
    FleetSettings,
    Wave,
    load_fleet_settings,
    parse_phases,
    select_environments,
    waves_of,
)
from phasegate.sandbox.server import start_sandbox, stop_sandbox
from phasegate.sandbox.tiers import parse_tiers


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Five environment files: acme-1 and acme-2 (dev), acme-3 (staging), beta-1 (prod),
    beta-2 (dev, in eu-west-1)."""
    envs = tmp_path / "environments"
    envs.mkdir()
    endpoint = "http://127.0.0.1:1"
    for name, tier in [("acme-1", "dev"), ("acme-2", "dev"), ("acme-3", "staging")]:
        write_environment(envs, name, endpoint, tier=tier)
    write_environment(envs, "beta-1", endpoint, tier="prod")
    write_environment(
        envs, "beta-2", endpoint, aws={"region": "eu-west-1", "endpoint_url": endpoint}
    )
    return envs


def names(configs: list) -> list[str]:
    return [c.name for c in configs]


def test_selectors_are_globs_anded_over_name_tier_region_and_tags(folder: Path) -> None:
    assert names(select_environments(["tier=dev"], [folder])) == ["acme-1", "acme-2", "beta-2"]
    assert names(select_environments(["name=acme-*", "tier=dev"], [folder])) == [
        "acme-1",
        "acme-2",
    ]
    assert names(select_environments(["region=eu-*"], [folder])) == ["beta-2"]
    assert names(select_environments(["tag.Environment=beta-?"], [folder])) == [
        "beta-1",
        "beta-2",
    ]
    with pytest.raises(ConfigError, match="no environment matches name=zeta-\\* in"):
        select_environments(["name=zeta-*"], [folder])
    with pytest.raises(ConfigError, match="unknown key 'owner'; known: name, tier"):
        select_environments(["owner=ana"], [folder])
    with pytest.raises(ConfigError, match="expected KEY=PATTERN"):
        select_environments(["tier"], [folder])


def test_an_invalid_environment_file_is_named_not_skipped(folder: Path) -> None:
    (folder / "broken.yaml").write_text("name: broken\ntier: qa\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: tier: 'qa' is not one of"):
        select_environments(["tier=dev"], [folder])


def test_waves_follow_tier_order_or_the_configured_waves(folder: Path) -> None:
    chosen = select_environments([], [folder])
    default = waves_of(chosen, FleetSettings().waves)
    assert [(w, names(m)) for w, m in default] == [
        ("dev", ["acme-1", "acme-2", "beta-2"]),
        ("staging", ["acme-3"]),
        ("prod", ["beta-1"]),
    ]
    waves = [Wave(name="canary", select=["name=acme-1"]), Wave(name="rest", select=["tier=*"])]
    assert [(w, names(m)) for w, m in waves_of(chosen, waves)] == [
        ("canary", ["acme-1"]),
        ("rest", ["acme-2", "acme-3", "beta-1", "beta-2"]),
    ]
    with pytest.raises(ConfigError, match="acme-3 \\(tier staging\\) is in no fleet wave"):
        waves_of(
            chosen, [Wave(name="devs", select=["tier=dev"]), Wave(name="p", select=["tier=prod"])]
        )


@pytest.mark.parametrize(
    ("max_errors", "total", "tolerated"),
    [(0, 12, 0), (1, 12, 1), ("10%", 12, 1), ("25%", 12, 3), ("0%", 50, 0), ("100%", 7, 7)],
)
def test_max_errors_is_a_count_or_a_percentage_rounded_down(
    max_errors: int | str, total: int, tolerated: int
) -> None:
    assert FleetSettings(max_errors=max_errors).error_threshold(total) == tolerated


def test_fleet_yaml_errors_name_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"fleet": {"max_errors": "ten", "max_concurency": 3}}))
    with pytest.raises(ConfigError) as caught:
        load_fleet_settings(path)
    message = str(caught.value)
    assert "fleet.yaml: fleet.max_errors: expected a count >= 0 or a percentage" in message
    assert "fleet.max_concurency: unknown field (did you mean 'max_concurrency'?)" in message
    path.write_text(yaml.safe_dump({"fleet": {"max_concurrency": 4, "bake_minutes": 0.5}}))
    settings = load_fleet_settings(path)
    assert (settings.max_concurrency, settings.bake_minutes) == (4, 0.5)
    assert [w.name for w in settings.waves] == ["dev", "staging", "prod"]
    with pytest.raises(ConfigError, match=r"config\.yaml: file not found"):
        load_fleet_settings(tmp_path / "config.yaml")


def test_phases_and_tiers_parse_or_say_why() -> None:
    assert parse_phases("2,1") == [1, 2]
    with pytest.raises(ConfigError, match="phases are 1, 2 and 3"):
        parse_phases("4")
    assert parse_tiers("prod:1,dev:2") == {"dev-1": "dev", "dev-2": "dev", "prod-1": "prod"}
    for bad in ("dev", "qa:2", "dev:0", "dev:1,dev:2"):
        with pytest.raises(ConfigError, match="--tiers"):
            parse_tiers(bad)


def test_fleet_commands_refuse_bad_input_with_exit_2(folder: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["fleet", "run", "--select", "owner=x", "--environments-dir", str(folder)]
    )
    assert result.exit_code == 2 and "unknown key 'owner'" in result.output
    result = runner.invoke(
        app, ["fleet", "plan", "--phases", "7", "--environments-dir", str(folder)]
    )
    assert result.exit_code == 2 and "phases are 1, 2 and 3" in result.output


def test_sandbox_up_tiers_seeds_a_fleet_with_each_tier() -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["sandbox", "up", "--tiers", "dev:1,prod:1", "--environments", "3"])
    assert bad.exit_code == 2 and "disagree" in bad.output
    stop_sandbox()
    state = start_sandbox(port=free_port(), tiers=parse_tiers("dev:2,staging:1,prod:1"))
    try:
        assert state.environments == ["dev-1", "dev-2", "staging-1", "prod-1"]
        tiers = {name: load_environment(name).tier for name in state.environments}
        assert tiers == {"dev-1": "dev", "dev-2": "dev", "staging-1": "staging", "prod-1": "prod"}
        prod = parse_environment(Path(load_environment("prod-1").source or ""))
        assert prod.discovery.tags == {"Environment": "prod-1"}
        assert names(select_environments(["name=prod-*", "tier=prod"])) == ["prod-1"]
    finally:
        stop_sandbox()


def test_fleet_plan_shows_waves_and_each_environments_planned_delta(
    seeded: EnvironmentConfig, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["fleet", "plan", "--phases", "1", "--environments-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.output.splitlines() if " demo " in line]
    wave, name, tier, changes, delta = (cell.strip() for cell in row.strip("│ ").split("│"))
    assert (wave, name, tier) == ("dev", "demo", "dev")
    assert int(changes) >= 4 and float(delta.replace(",", "")) < 0, row
    assert "1 environments in 1 waves; max_concurrency 10" in " ".join(result.output.split())
