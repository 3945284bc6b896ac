"""terraform/ applied by real Terraform and the real hashicorp/aws provider against a sandbox of
its own: the fixtures (registered in conftest.py) and helpers the Terraform test modules share.

Each test module gets its own sandbox process and stack (module-scoped fixtures), so the
modules can run side by side (scripts/run-tests). Provider installation uses a CLI config built
here with the machine's provider filesystem mirror (`find / -maxdepth 3 -name tf-plugins`);
nothing reaches the network.
"""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import free_port, wait_until_answering, write_environment

from phasegate import lifecycle
from phasegate.aws import AwsClients
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.sandbox.app import is_mutating
from phasegate.sandbox.terraform_seed import apply_environment
from phasegate.steps import StepContext
from tasks.registry import STEPS

ENV = "tfdemo"


def mirror() -> Path:
    """The provider filesystem mirror this kind of machine ships (depth <= 3 under /)."""
    for pattern in ("tf-plugins", "*/tf-plugins", "*/*/tf-plugins"):
        found = sorted(Path("/").glob(pattern))
        if found:
            return found[0]
    pytest.fail("no provider filesystem mirror (tf-plugins) within 3 levels of /")


@pytest.fixture(scope="module")
def cli_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Terraform CLI config installing hashicorp/aws from the mirror only, with a plugin
    cache so each init links the provider instead of copying it."""
    root = tmp_path_factory.mktemp("terraform-cli")
    (root / "cache").mkdir()
    path = root / "cli.tfrc"
    path.write_text(
        f'plugin_cache_dir = "{root / "cache"}"\n'
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror()}"\n'
        '    include = ["registry.terraform.io/*/*"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n}\n'
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("TF_CLI_CONFIG_FILE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def tf_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A sandbox of this module's own, in a process of its own: moto's state is global to a
    process, so an in-process server would share it with the session's, which other tests
    reset (a reset in the middle of this module's two-minute apply lost its database)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("tf-sandbox") / "sandbox.log"
    log = log_path.open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "phasegate.sandbox.daemon", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/moto-api/", daemon, 60, log_path)
        yield url
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()


@pytest.fixture(scope="module")
def stack(
    cli_config: Path, tf_sandbox: str, tmp_path_factory: pytest.TempPathFactory
) -> EnvironmentConfig:
    """terraform/ applied once as environment tfdemo; its config (executor: terraform)."""
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=tf_sandbox))
    root = tmp_path_factory.mktemp("stacks")
    sections = apply_environment(clients, root, ENV, 1, tf_sandbox)
    sections["executor"]["result_storage"] = str(root / "results")
    return parse_environment(write_environment(root, ENV, tf_sandbox, **sections))


def step_of(config: EnvironmentConfig, step_id: str) -> Any:
    return STEPS[step_id](StepContext.for_environment(config))


def set_faults(endpoint: str, spec: dict[str, Any] | None = None) -> None:
    if spec is None:
        requests.delete(f"{endpoint}/_phasegate/faults", timeout=10).raise_for_status()
    else:
        requests.post(f"{endpoint}/_phasegate/faults", json=spec, timeout=10).raise_for_status()


def sandbox_calls(endpoint: str) -> list[str]:
    """The sandbox's call log, `service:Action` in the order the calls arrived."""
    calls = requests.get(f"{endpoint}/_phasegate/calls", timeout=10).json()
    return [f"{c['service']}:{c['action']}" for c in calls]


def mutating_calls(endpoint: str) -> list[str]:
    return [c for c in sandbox_calls(endpoint) if is_mutating(c.split(":", 1)[1])]


def clear_calls(endpoint: str) -> None:
    requests.delete(f"{endpoint}/_phasegate/calls", timeout=10).raise_for_status()


def second_run_changes_nothing(step: Any, endpoint: str) -> None:
    clear_calls(endpoint)
    assert lifecycle.checkpoint(step) is not None  # a second run skips the step ...
    assert mutating_calls(endpoint) == []  # ... having changed nothing
