"""Credentials that outlast a long run: `aws.role_arn` is assumed again once they expire.

Everything goes over HTTP to the sandbox, STS included (moto answers AssumeRole); the sandbox's
call log shows each AssumeRole. Expiry is forced by moving the refreshable credentials' expiry
time into the past, the one thing touched: what happens next is botocore's own refresh.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from phasegate.aws import ROLE_SESSION_NAME, AwsClients, make_session
from phasegate.config import AwsSettings

ROLE = "arn:aws:iam::123456789012:role/phasegate-deployer"


def _count(sandbox: str, action: str) -> int:
    log = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    return sum(1 for call in log if (call["service"], call["action"]) == ("sts", action))


def _settings(sandbox: str) -> AwsSettings:
    return AwsSettings(region="us-east-1", endpoint_url=sandbox, role_arn=ROLE)


def test_role_is_assumed_again_after_the_credentials_expire(sandbox: str) -> None:
    session = make_session(_settings(sandbox))
    clients = AwsClients(_settings(sandbox), session=session)

    identity = clients.sts.get_caller_identity()
    assert (
        identity["Arn"]
        == f"arn:aws:sts::123456789012:assumed-role/phasegate-deployer/{ROLE_SESSION_NAME}"
    )
    clients.ec2.describe_vpcs()
    assert _count(sandbox, "AssumeRole") == 1  # still valid: not assumed again

    credentials = session.get_credentials()
    first_key = credentials.get_frozen_credentials().access_key
    # An hour later, mid-run (a long approval, an RDS wait): the credentials have expired.
    credentials._expiry_time = datetime.now(UTC) - timedelta(minutes=1)

    vpcs = clients.ec2.describe_vpcs()["Vpcs"]

    assert vpcs  # the call succeeded, with fresh credentials
    assert _count(sandbox, "AssumeRole") == 2
    assert credentials.get_frozen_credentials().access_key != first_key
    assert credentials._expiry_time > datetime.now(UTC) + timedelta(minutes=30)


def test_role_is_assumed_lazily_on_the_first_call(sandbox: str) -> None:
    """Making the session and clients does no I/O; the first call assumes the role.

    Lazy, because sessions and clients are made wherever a StepContext is (each flow process,
    `plan`, the simulator), also where no call follows, and a network call in a constructor
    fails far from the code that needed AWS. Failing early is the CLI's pre-flight
    (phasegate.preflight): its GetCallerIdentity is that first call, before any flow starts.
    """
    clients = AwsClients(_settings(sandbox))
    clients.client("ec2")
    clients.client("rds", region="eu-west-1")
    assert _count(sandbox, "AssumeRole") == 0

    clients.ec2.describe_vpcs()
    clients.rds.describe_db_instances()
    assert _count(sandbox, "AssumeRole") == 1  # one for all the clients of the session


def test_profile_path_still_refreshes_through_botocore(
    sandbox: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile (here a role chain from a source profile) stays botocore's: it refreshes too."""
    config = tmp_path / "aws-config"
    config.write_text(
        "[profile base]\n"
        "aws_access_key_id = base-key\n"
        "aws_secret_access_key = base-secret\n"
        "[profile chained]\n"
        f"role_arn = {ROLE}\n"
        "source_profile = base\n"
        f"endpoint_url = {sandbox}\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))

    settings = AwsSettings(region="us-east-1", endpoint_url=sandbox, profile="chained")
    session = make_session(settings)
    AwsClients(settings, session=session).ec2.describe_vpcs()

    assert session.get_credentials().method == "assume-role"  # botocore's refreshing provider
    assert _count(sandbox, "AssumeRole") == 1
