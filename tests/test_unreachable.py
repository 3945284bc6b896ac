"""An unreachable AWS endpoint is one clear line, fast, for every command that reaches AWS.

Each command runs as a real `python -m phasegate.cli` process against an environment whose
endpoint_url is a free port nobody listens on (the sandbox stopped), as a new user would meet it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError
from conftest import free_port, write_environment

from phasegate.config import parse_environment
from phasegate.errors import AwsUnreachable, PhasegateError
from phasegate.preflight import check_aws, unreachable_message
from phasegate.status import environment_tag

# The brief's bound for the whole command, process start and imports included.
DEADLINE_SECONDS = 20


def _phasegate(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI; a run past DEADLINE_SECONDS fails the test with TimeoutExpired."""
    env = {
        **os.environ,
        "PHASEGATE_HOME": str(home),
        "PREFECT_HOME": str(home / "prefect"),  # the test's own, not one set at import time
        "COLUMNS": "80",  # a narrow terminal must not wrap the line
    }
    return subprocess.run(
        [sys.executable, "-m", "phasegate.cli", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        env=env,
    )


@pytest.fixture
def dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"  # bound for a moment, then released: nobody listens


@pytest.mark.usefixtures("prefect_client_env")
@pytest.mark.parametrize(
    "command",
    [["inventory"], ["plan"], ["run", "--auto-approve"], ["status"]],
    ids=lambda c: c[0],
)
def test_unreachable_endpoint_is_one_line_and_exit_1(
    tmp_path: Path, dead_endpoint: str, command: list[str]
) -> None:
    env_file = write_environment(tmp_path, "ghost", dead_endpoint)

    done = _phasegate(tmp_path, command[0], str(env_file), *command[1:])

    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    [line] = lines
    assert line.startswith("error: ghost: cannot reach the AWS endpoint ")
    assert dead_endpoint in line
    assert f"phasegate sandbox up --port {dead_endpoint.rsplit(':', 1)[1]}" in line
    assert str(env_file) in line  # where to correct aws.endpoint_url


@pytest.mark.usefixtures("prefect_client_env")
def test_run_against_an_unreachable_endpoint_starts_no_flow(
    tmp_path: Path, dead_endpoint: str
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    env_file = write_environment(tmp_path, "ghostrun", dead_endpoint)
    assert _phasegate(tmp_path, "run", str(env_file), "--auto-approve").returncode == 1

    tags = FlowRunFilterTags(all_=[environment_tag("ghostrun")])
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=tags))
    assert runs == []


def test_check_aws_passes_with_the_sandbox_up(sandbox: str, tmp_path: Path) -> None:
    config = parse_environment(write_environment(tmp_path, "alive", sandbox))
    assert check_aws(config).startswith("arn:aws:")


def test_check_aws_raises_a_phasegate_error(tmp_path: Path, dead_endpoint: str) -> None:
    config = parse_environment(write_environment(tmp_path, "ghost", dead_endpoint))
    with pytest.raises(AwsUnreachable) as caught:
        check_aws(config)
    assert isinstance(caught.value, PhasegateError) and caught.value.exit_code == 1


def test_without_endpoint_the_line_says_what_to_check_on_aws(tmp_path: Path) -> None:
    """Real AWS (no endpoint_url): no sandbox advice, but the region and credentials."""
    path = write_environment(tmp_path, "prodlike", "http://unused", aws={"region": "eu-west-1"})
    config = parse_environment(path)
    error = ConnectTimeoutError(endpoint_url="https://sts.eu-west-1.amazonaws.com/")
    line = unreachable_message(config, error)
    assert line.startswith("prodlike: cannot reach AWS STS in eu-west-1 (no connection within 3 s)")
    assert "sandbox" not in line and "aws.region" in line and "AWS_PROFILE" in line

    default = write_environment(tmp_path, "local", "http://127.0.0.1:4566")
    line = unreachable_message(parse_environment(default), EndpointConnectionError(endpoint_url=""))
    assert "`phasegate sandbox up`" in line  # the default port needs no --port
