"""A retried attempt of an answered request gets the same answer; nothing runs twice.

The requests are sent as an SDK sends them over HTTP (`amz-sdk-invocation-id`, the same for
every attempt of one operation, and `amz-sdk-request: attempt=N`), to the session's sandbox.
"""

import re
import uuid

import boto3
import pytest
import requests

HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Authorization": "AWS4-HMAC-SHA256 Credential=sandbox/20261207/us-east-1/ec2/aws4_request, "
    "SignedHeaders=host, Signature=unchecked",
}


def _attempt(sandbox: str, body: str, invocation: str, attempt: int) -> requests.Response:
    headers = {
        **HEADERS,
        "amz-sdk-invocation-id": invocation,
        "amz-sdk-request": f"attempt={attempt}; max=3",
    }
    return requests.post(sandbox, data=body, headers=headers, timeout=10)


@pytest.fixture
def vpc(sandbox: str) -> str:
    ec2 = boto3.client(
        "ec2",
        endpoint_url=sandbox,
        region_name="us-east-1",
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )
    return ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]


def _create_group(vpc: str) -> str:
    return (
        f"Action=CreateSecurityGroup&GroupName=web&GroupDescription=web&VpcId={vpc}"
        "&Version=2016-11-15"
    )


def _groups_named_web(sandbox: str, vpc: str) -> list[str]:
    body = (
        "Action=DescribeSecurityGroups&Filter.1.Name=group-name&Filter.1.Value.1=web"
        f"&Filter.2.Name=vpc-id&Filter.2.Value.1={vpc}&Version=2016-11-15"
    )
    answer = requests.post(sandbox, data=body, headers=HEADERS, timeout=10)
    return re.findall(r"<groupId>(sg-[0-9a-f]+)</groupId>", answer.text)


def test_a_retry_of_an_answered_create_gets_the_first_answer(sandbox: str, vpc: str) -> None:
    invocation = str(uuid.uuid4())
    first = _attempt(sandbox, _create_group(vpc), invocation, 1)
    retry = _attempt(sandbox, _create_group(vpc), invocation, 2)

    assert first.status_code == retry.status_code == 200
    assert retry.content == first.content  # the same group id, not InvalidGroup.Duplicate
    assert len(_groups_named_web(sandbox, vpc)) == 1


def test_another_call_still_gets_awss_duplicate_error(sandbox: str, vpc: str) -> None:
    assert _attempt(sandbox, _create_group(vpc), str(uuid.uuid4()), 1).status_code == 200
    again = _attempt(sandbox, _create_group(vpc), str(uuid.uuid4()), 1)
    assert again.status_code == 400
    assert "InvalidGroup.Duplicate" in again.text


def test_a_retry_after_an_injected_fault_runs(sandbox: str, vpc: str) -> None:
    fault = {"action": "CreateSecurityGroup", "code": "Throttling", "times": 1}
    requests.post(f"{sandbox}/_phasegate/faults", json=fault, timeout=10).raise_for_status()
    invocation = str(uuid.uuid4())

    failed = _attempt(sandbox, _create_group(vpc), invocation, 1)
    assert failed.status_code == 400
    assert "Throttling" in failed.text
    assert _groups_named_web(sandbox, vpc) == []

    retry = _attempt(sandbox, _create_group(vpc), invocation, 2)
    assert retry.status_code == 200
    assert len(_groups_named_web(sandbox, vpc)) == 1
