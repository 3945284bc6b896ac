"""Environment config: every mistake is one ConfigError (exit 2) naming the file and the field.

Files are written into a temporary working directory, so messages show them as `x.yaml`, the
way a user who typed a relative path would see them.
"""

from pathlib import Path

import pytest

from phasegate.config import (
    EnvironmentConfig,
    environment_path,
    load_environment,
    parse_environment,
)
from phasegate.errors import ConfigError
from phasegate.home import REPO_ROOT

VALID = """\
name: x
tier: dev
discovery:
  tags: {Environment: x}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(directory: Path, text: str, name: str = "x.yaml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_environment(path)
    assert caught.value.exit_code == 2
    return str(caught.value)


BAD_INPUTS = [
    pytest.param(
        "name: x\ntier: [dev\n",
        ["x.yaml: YAML syntax error: line 3, column 1:", "flow sequence at line 2"],
        id="yaml-syntax-unclosed",
    ),
    pytest.param(
        "name: x\n  tier: dev\n",
        ["x.yaml: YAML syntax error: line 2, column 7: mapping values are not allowed here"],
        id="yaml-syntax-indent",
    ),
    pytest.param("", ["x.yaml: file is empty"], id="empty-file"),
    pytest.param("# only a comment\n", ["x.yaml: file is empty"], id="comment-only-file"),
    pytest.param(
        "- a\n- b\n", ["x.yaml: expected a mapping of fields, got list"], id="not-a-mapping"
    ),
    pytest.param(
        VALID + "tagets: {compute: ecs-fargate-arm64}\n",
        ["x.yaml: tagets: unknown field (did you mean 'targets'?)"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        VALID + "targets:\n  compute_target: ec2-asg-graviton\n",
        ["x.yaml: targets.compute_target: unknown field (did you mean 'compute'?)"],
        id="unknown-nested-key",
    ),
    pytest.param(
        VALID
        + "schedule:\n  windows:\n    nightly:\n      days: [sat]\n      start: '02:00'\n"
        + "      duraton_minutes: 60\n",
        [
            "x.yaml: schedule.windows.nightly.duraton_minutes: unknown field"
            " (did you mean 'duration_minutes'?)",
            "x.yaml: schedule.windows.nightly.duration_minutes: required field is missing",
        ],
        id="unknown-key-inside-named-window",
    ),
    pytest.param(
        "tier: dev\ndiscovery:\n  tags: {Environment: x}\n",
        ["x.yaml: name: required field is missing"],
        id="missing-name",
    ),
    pytest.param(
        VALID.replace("name: x", "name: Acme_Prod"),
        ["x.yaml: name: 'Acme_Prod' is not a valid name", "lowercase"],
        id="bad-name",
    ),
    pytest.param(
        VALID.replace("tier: dev", "tier: qa"),
        ["x.yaml: tier: 'qa' is not one of 'dev', 'staging' or 'prod'"],
        id="unknown-tier",
    ),
    pytest.param(
        VALID + "gates:\n  count: three\n",
        ["x.yaml: gates.count: ", "valid integer", "got 'three'"],
        id="wrong-type",
    ),
    pytest.param(
        VALID + "gates:\n  count: 0\n",
        ["x.yaml: gates.count: ", "greater than or equal to 1", "got 0"],
        id="below-minimum",
    ),
    pytest.param(
        VALID + "targets:\n",
        ["x.yaml: targets: expected a mapping of fields, got None"],
        id="empty-section",
    ),
    pytest.param(
        "name: x\ntier: dev\ndiscovery:\n  tags: {}\n",
        ["x.yaml: discovery.tags: must name at least one tag"],
        id="empty-discovery-tags",
    ),
    pytest.param(
        "name: x\ntier: dev\n",
        ["x.yaml: discovery: required field is missing"],
        id="missing-discovery",
    ),
    pytest.param(
        VALID + "aws:\n  region: us-est-1\n",
        ["x.yaml: aws.region: 'us-est-1' is not an AWS region (did you mean 'us-"],
        id="unknown-region",
    ),
    pytest.param(
        VALID + "aws:\n  endpoint_url: localhost:4566\n",
        ["x.yaml: aws.endpoint_url: 'localhost:4566' is not an http(s) URL"],
        id="malformed-endpoint-url",
    ),
    pytest.param(
        VALID + "aws:\n  role_arn: deployer\n",
        ["x.yaml: aws.role_arn: 'deployer' is not an IAM role ARN"],
        id="malformed-role-arn",
    ),
    pytest.param(
        VALID + "targets:\n  compute: lambda\n",
        [
            "x.yaml: targets.compute: 'lambda' is not one of"
            " 'ecs-fargate-arm64' or 'ec2-asg-graviton'"
        ],
        id="unknown-compute-target",
    ),
    pytest.param(
        VALID + "targets:\n  rds_instance_class: db.bogus\n",
        ["x.yaml: targets.rds_instance_class: 'db.bogus' is not an RDS instance class"],
        id="not-an-rds-class",
    ),
    pytest.param(
        VALID + "targets:\n  rds_instance_class: db.t3.micro\n",
        [
            "x.yaml: targets.rds_instance_class: 'db.t3.micro' is not a Graviton (ARM64) class",
            "'db.t4g.micro'",
        ],
        id="rds-not-graviton",
    ),
    pytest.param(
        VALID + "targets:\n  redis_node_type: cache.t3.micro\n",
        [
            "x.yaml: targets.redis_node_type: 'cache.t3.micro' is not a Graviton (ARM64) class",
            "'cache.t4g.micro'",
        ],
        id="redis-not-graviton",
    ),
    pytest.param(
        VALID + "targets:\n  ec2_instance_type: t3.medium\n",
        [
            "x.yaml: targets.ec2_instance_type: 't3.medium' is not a Graviton (ARM64) class",
            "'t4g.medium'",
        ],
        id="ec2-not-graviton",
    ),
    pytest.param(
        "name: x\ntier: dev\nname: y\ndiscovery:\n  tags: {Environment: x}\n",
        ["x.yaml: duplicate key 'name' at line 3 (first at line 1)"],
        id="duplicate-key",
    ),
    pytest.param(
        VALID + "targets:\n  compute: ec2-asg-graviton\n  compute: ecs-fargate-arm64\n",
        ["x.yaml: duplicate key 'compute' at line 7 (first at line 6)"],
        id="duplicate-nested-key",
    ),
    pytest.param(
        VALID + "? [a, b]\n: c\n",
        ["x.yaml: YAML syntax error: line 5", "unhashable key"],
        id="unhashable-key",
    ),
    pytest.param(
        VALID.replace("tier: dev", "tier: prod") + "approvals:\n  auto_approve: true\n",
        ["x.yaml: approvals.auto_approve: prod environments are never auto-approved"],
        id="prod-auto-approve",
    ),
    pytest.param(
        VALID + "targets:\n  asg_min: 6\n  asg_max: 2\n",
        ["x.yaml: targets: asg_min (6) is above asg_max (2)"],
        id="asg-min-above-max",
    ),
    pytest.param(
        VALID
        + "schedule:\n  windows:\n    w: {days: [monday], start: '25:00', duration_minutes: 60}\n",
        [
            "x.yaml: schedule.windows.w.days.0: 'monday' is not one of 'mon',",
            "x.yaml: schedule.windows.w.start: '25:00' is not a 24-hour HH:MM time",
        ],
        id="bad-window",
    ),
    # YAML 1.1 reads unquoted 14:30 as the number 870 and 2025-12-24 as a date.
    pytest.param(
        VALID + "schedule:\n  windows:\n    w: {days: [mon], start: 14:30, duration_minutes: 60}\n",
        ["x.yaml: schedule.windows.w.start: expected a string, got 870; put the value in quotes"],
        id="unquoted-time",
    ),
    pytest.param(
        VALID + "schedule:\n  blackout_dates: [2025-12-24]\n",
        ["x.yaml: schedule.blackout_dates.0: expected a string", "put the value in quotes"],
        id="unquoted-date",
    ),
    pytest.param(
        "name: x\ntier: dev\ndiscovery:\n  tags: {Environment: x, CostCenter: 1234}\n",
        ["x.yaml: discovery.tags.CostCenter: expected a string, got 1234; put the value in quotes"],
        id="numeric-tag-value",
    ),
    pytest.param(
        VALID + "phases:\n  wait_timeouts: {rds_modfy: 60}\n",
        ["x.yaml: phases.wait_timeouts:", "unknown wait kind(s) ['rds_modfy']", "rds_modify"],
        id="unknown-wait-kind",
    ),
    pytest.param(
        VALID + "phases:\n  wait_timeouts: {ecs_deploy: 0}\n",
        ["x.yaml: phases.wait_timeouts:", "['ecs_deploy']: a wait timeout must be a positive"],
        id="non-positive-wait-timeout",
    ),
    pytest.param(
        VALID + "regions:\n  secondary: us-east-1\n  hosted_zone: z.\n  record_name: api.z\n",
        ["x.yaml: regions.secondary: 'us-east-1' is aws.region, the primary"],
        id="secondary-is-primary",
    ),
    pytest.param(
        VALID + "regions:\n  secondary: us-wset-2\n  hosted_zone: z.\n  record_name: api.z\n",
        ["x.yaml: regions.secondary: 'us-wset-2' is not an AWS region (did you mean 'us-west-2'?)"],
        id="unknown-secondary-region",
    ),
    pytest.param(
        VALID + "regions:\n  secondary: us-west-2\n",
        ["x.yaml: regions: secondary is set, so hosted_zone and record_name are needed too"],
        id="secondary-without-zone",
    ),
]


@pytest.mark.parametrize(("text", "fragments"), BAD_INPUTS)
def test_bad_input_is_a_config_error_naming_file_and_field(
    workdir: Path, text: str, fragments: list[str]
) -> None:
    message = config_error(write(workdir, text))
    for fragment in fragments:
        assert fragment in message
    # Every line stands on its own: one problem, prefixed with the file.
    assert all(line.startswith("x.yaml: ") for line in message.splitlines())


def test_every_problem_is_reported_at_once(workdir: Path) -> None:
    text = VALID.replace("tier: dev", "tier: qa") + "aws:\n  region: mars-1\n"
    lines = config_error(write(workdir, text)).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("x.yaml: tier: 'qa'")
    assert lines[1].startswith("x.yaml: aws.region: 'mars-1'")


def test_missing_file(workdir: Path) -> None:
    assert config_error(workdir / "nope.yaml") == "nope.yaml: file not found"


def test_file_that_is_not_text(workdir: Path) -> None:
    path = workdir / "x.yaml"
    path.write_bytes(b"\xff\xfename: x\n")
    assert config_error(path).startswith("x.yaml: not UTF-8 text")


def test_message_shows_a_path_outside_the_working_directory_in_full(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("tier: dev", "tier: qa"))
    assert config_error(path).startswith(f"{path}: tier: ")


def test_demo_environment_loads() -> None:
    config = parse_environment(REPO_ROOT / "config" / "environments" / "demo.yaml")
    assert config.name == "demo"
    assert config.tier == "dev"
    assert config.discovery.tags == {"Environment": "demo"}
    assert config.aws.endpoint_url == "http://127.0.0.1:4566"
    assert config.targets.compute == "ecs-fargate-arm64"
    assert config.targets.rds_instance_class == "db.t4g.micro"
    assert config.source == REPO_ROOT / "config" / "environments" / "demo.yaml"


def test_defaults_are_filled(workdir: Path) -> None:
    config = parse_environment(write(workdir, VALID))
    assert config.source == workdir / "x.yaml"
    assert config.aws.model_dump() == {
        "region": "us-east-1",
        "profile": None,
        "role_arn": None,
        "endpoint_url": None,
    }
    assert config.targets.model_dump() == {
        "compute": "ecs-fargate-arm64",
        "rds_instance_class": "db.t4g.micro",
        "redis_node_type": "cache.t4g.micro",
        "ec2_instance_type": "t4g.medium",
        "asg_min": 1,
        "asg_max": 5,
    }
    assert config.usage.nat_processed_gb_per_month == 500.0
    assert config.usage.alb_lcu_average == 1.0
    assert (config.gates.interval_seconds, config.gates.count) == (60.0, 3)
    assert (config.gates.failure_limit, config.gates.inconclusive_limit) == (0, 1)
    assert config.gates.on_failure == "rollback"
    assert config.approvals.auto_approve is None
    assert config.approvals.timeout_seconds == 3600.0
    assert config.schedule.timezone == "UTC"
    assert config.schedule.windows == {}
    assert config.phases.enabled == [1, 2, 3]
    assert config.phases.on_step_failure == "rollback"
    assert config.executor.result_storage is None
    assert (config.executor.max_workers, config.executor.step_retries) == (4, 3)
    # The loaded source is not part of the config itself.
    assert "source" not in config.model_dump()


def test_full_config_round_trips(workdir: Path) -> None:
    text = """\
name: acme-prod
tier: prod
aws: {region: eu-west-1, role_arn: "arn:aws:iam::123456789012:role/phasegate"}
discovery:
  tags: {Environment: acme-prod, Team: platform}
targets:
  compute: ec2-asg-graviton
  rds_instance_class: db.r7g.large
  redis_node_type: cache.m7g.xlarge
  ec2_instance_type: c7gn.2xlarge
  asg_min: 2
  asg_max: 2
approvals: {auto_approve: false, timeout_seconds: 600}
schedule:
  timezone: Europe/Berlin
  windows:
    nightly: {days: [mon, tue, wed, thu], start: "02:00", duration_minutes: 120}
  blackout_dates: ["2025-12-24"]
  phase_windows: {1: nightly}
phases: {enabled: [1, 3], on_step_failure: stop}
executor: {result_storage: /var/lib/phasegate, max_workers: 2}
"""
    config = parse_environment(write(workdir, text))
    assert isinstance(config, EnvironmentConfig)
    assert config.targets.ec2_instance_type == "c7gn.2xlarge"
    assert config.schedule.windows["nightly"].duration_minutes == 120
    assert config.schedule.phase_windows == {1: "nightly"}
    assert config.phases.enabled == [1, 3]


def test_prod_may_leave_auto_approve_unset_and_dev_may_auto_approve(workdir: Path) -> None:
    prod = parse_environment(write(workdir, VALID.replace("tier: dev", "tier: prod"), "p.yaml"))
    assert prod.approvals.auto_approve is None
    dev = parse_environment(write(workdir, VALID + "approvals: {auto_approve: true}\n", "d.yaml"))
    assert dev.approvals.auto_approve is True


# --- Where ENV is looked up -------------------------------------------------------------


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(PHASEGATE_HOME/environments, PHASEGATE_CONFIG_DIR/environments), both empty."""
    home, config = tmp_path / "home", tmp_path / "config"
    monkeypatch.setenv("PHASEGATE_HOME", str(home))
    monkeypatch.setenv("PHASEGATE_CONFIG_DIR", str(config))
    (config / "environments").mkdir(parents=True)
    return home / "environments", config / "environments"


def test_name_is_found_in_config_dir(dirs: tuple[Path, Path]) -> None:
    _, repo = dirs
    path = write(repo, VALID.replace("name: x", "name: acme"), "acme.yaml")
    assert environment_path("acme") == path
    assert load_environment("acme").name == "acme"


def test_sandbox_written_file_wins_over_config_dir(dirs: tuple[Path, Path]) -> None:
    generated, repo = dirs
    write(repo, VALID + "aws: {endpoint_url: 'http://127.0.0.1:4566'}\n", "x.yaml")
    path = write(generated, VALID + "aws: {endpoint_url: 'http://127.0.0.1:51234'}\n", "x.yaml")
    assert environment_path("x") == path
    assert load_environment("x").aws.endpoint_url == "http://127.0.0.1:51234"


def test_a_path_is_used_as_given(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    generated, _ = dirs
    write(generated, VALID, "x.yaml")
    elsewhere = write(tmp_path / "elsewhere", VALID.replace("name: x", "name: other"))
    assert environment_path(str(elsewhere)) == elsewhere
    assert load_environment(str(elsewhere)).name == "other"
    assert environment_path("x.yml") == Path("x.yml")


def test_unknown_name_lists_where_it_looked(dirs: tuple[Path, Path]) -> None:
    generated, repo = dirs
    with pytest.raises(ConfigError) as caught:
        environment_path("ghost")
    assert caught.value.exit_code == 2
    assert str(caught.value) == (
        f"environment 'ghost' not found: no ghost.yaml in {generated}, {repo}"
    )


def test_loading_a_missing_path_names_it(workdir: Path) -> None:
    with pytest.raises(ConfigError, match=r"^envs/x\.yaml: file not found$"):
        load_environment("envs/x.yaml")


def test_a_wait_never_outlasts_its_step(workdir: Path) -> None:
    text = VALID + "phases:\n  step_timeout_seconds: 100\n  wait_timeouts: {rds_modify: 50}\n"
    phases = parse_environment(write(workdir, text)).phases
    assert phases.wait_timeout("rds_modify") == 50
    assert phases.wait_timeout("elasticache_modify") == 100  # default 2400, capped by the step
