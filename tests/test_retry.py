"""Faults injected between the boto3 client and the moto server, and what the policy makes of them.

A `FaultInjector` hooks botocore's `before-send` event of one client made by AwsClients: for
the sends it is told to spoil it answers with an AWS-shaped error response (or raises a
connection error) without reaching moto; every other send goes to moto over HTTP as usual.
It counts sends (HTTP attempts, botocore's own retries included) and calls (one per
`_make_api_call`, i.e. one per attempt of the outer RetryPolicy).

botocore runs in `standard` mode under the policy with `retries={"max_attempts": 3}`. In that
dict botocore counts *retries*, not attempts (`total_max_attempts` would count attempts), so one
outer attempt is up to 4 sends, as measured here: N faults are survived with N+1 sends in
ceil((N+1)/4) calls, and a fault that never stops costs exactly policy.max_attempts * 4 sends.
"""

import json
import math
import pickle
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
import requests
from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ParamValidationError,
)
from botocore.parsers import ResponseParserError

from phasegate.aws import AwsClients, make_session
from phasegate.config import AwsSettings
from phasegate.errors import AwsCallError, AwsRetriesExhausted, PhasegateError
from phasegate.retry import ASSUMED_DONE, RetryPolicy, is_transient, lost_response, resource_of

# phasegate.aws._BOTOCORE_CONFIG: max_attempts=3 retries after the first send, 4 sends per call
BOTOCORE_ATTEMPTS = 4
FAST = {"initial_wait": 0.01, "max_wait": 0.05}


# --- the fault injector ------------------------------------------------------------------------


class _Body:
    """The `raw` of an AWSResponse: botocore reads it through stream()."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


@dataclass(frozen=True)
class Fault:
    """One kind of bad answer: an HTTP error response, or a connection that fails."""

    label: str
    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    connection_error: bool = False

    def answer(self, request: Any) -> AWSResponse:
        if self.connection_error:
            raise EndpointConnectionError(endpoint_url=request.url)
        headers = {"x-amzn-RequestId": "fault-injected", **self.headers}
        return AWSResponse(request.url, self.status, headers, _Body(self.body))


def ec2_error(code: str, status: int = 400) -> Fault:
    """EC2's own query protocol: <Response><Errors><Error>."""
    body = (
        f"<Response><Errors><Error><Code>{code}</Code><Message>injected {code}</Message>"
        f"</Error></Errors><RequestID>fault-injected</RequestID></Response>"
    )
    return Fault(f"ec2-{code}-{status}", status, body.encode(), {"Content-Type": "text/xml"})


def query_error(code: str, status: int = 400) -> Fault:
    """The query/XML protocol of RDS, ElastiCache, Auto Scaling, ELBv2: <ErrorResponse>."""
    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
        f"<Message>injected {code}</Message></Error>"
        f"<RequestId>fault-injected</RequestId></ErrorResponse>"
    )
    return Fault(f"xml-{code}-{status}", status, body.encode(), {"Content-Type": "text/xml"})


def json_error(code: str, status: int = 400) -> Fault:
    """The JSON 1.1 protocol of ECS: {"__type": ...}."""
    body = json.dumps({"__type": code, "message": f"injected {code}"}).encode()
    return Fault(
        f"json-{code}-{status}", status, body, {"Content-Type": "application/x-amz-json-1.1"}
    )


def gateway_page(status: int, page: str) -> Fault:
    """A gateway's or proxy's 5xx page instead of an AWS error body."""
    return Fault(f"page-{status}", status, page.encode(), {"Content-Type": "text/html"})


# For the XML protocols (EC2, RDS, ELBv2, ElastiCache, Auto Scaling) botocore recognises a 5xx
# whose body is empty or starts with <html> as a generic error and retries it; any other page
# that is not XML fails the parser with ResponseParserError, which botocore never retries
# (1 send per call): only the outer policy does.
HTML_503 = gateway_page(503, "<html><body><b>Http/1.1 Service Unavailable</b></body></html>")
NGINX_502 = gateway_page(502, "<!doctype html>\n<html><title>502 Bad Gateway</title></html>")
ENVOY_503 = gateway_page(503, "upstream connect error or disconnect/reset before headers")


CONNECTION_REFUSED = Fault("connection-error", connection_error=True)


class FaultInjector:
    """Spoils sends of `operation` on `client`; counts every send and every call per operation.

    Sends of `operation` number 1, 2, ...; the first `skip` go through, the next `faults` are
    answered with `fault` (faults=None: all the rest), later ones go through to moto again.
    """

    def __init__(
        self,
        client: Any,
        operation: str,
        fault: Fault,
        faults: int | None,
        skip: int = 0,
    ) -> None:
        self.operation = operation
        self.fault = fault
        self.faults = faults
        self.skip = skip
        self.sends: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.spoiled = 0
        # One `before-parameter-build` per _make_api_call: one per outer policy attempt.
        client.meta.events.register("before-parameter-build.*", self._on_call)
        client.meta.events.register("before-send.*", self._on_send)

    def _on_call(self, event_name: str, **_: Any) -> None:
        self.calls[event_name.rsplit(".", 1)[-1]] += 1

    def _on_send(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        self.sends[operation] += 1
        if operation != self.operation:
            return None
        n = self.sends[operation] - self.skip
        if n >= 1 and (self.faults is None or n <= self.faults):
            self.spoiled += 1
            return self.fault.answer(request)
        return None  # botocore sends the real request to moto


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def fast_botocore_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shorten botocore's own sleeps between its retries (1 s scale for throttling) to 10 ms.

    Only how long botocore sleeps changes, never whether or how often it retries: the send
    counts below are botocore's real arithmetic. One test runs without this, at full length.
    """
    from botocore.retries import standard

    # botocore's formula and its knobs differ between releases (and behind a feature flag);
    # scaling whatever delay it computes works on all of them.
    real_delay = standard.ExponentialBackoff.delay_amount
    monkeypatch.setattr(
        standard.ExponentialBackoff,
        "delay_amount",
        lambda self, context: real_delay(self, context) * 0.01,
    )


@pytest.fixture(scope="module")
def session(moto_server: str) -> boto3.Session:
    """One boto3 session for the module: its clients share botocore's loaded service models.

    Each AwsClients still makes its own clients, each with its own copy of the event hooks.
    """
    return make_session(AwsSettings(region="us-east-1", endpoint_url=moto_server))


@dataclass(frozen=True)
class World:
    """A few real resources in moto to read back through the faults."""

    sandbox: str
    session: boto3.Session
    vpc_id: str
    cluster: str
    service: str
    db: str

    def clients(self, **policy: Any) -> AwsClients:
        settings = AwsSettings(region="us-east-1", endpoint_url=self.sandbox)
        return AwsClients(settings, RetryPolicy(**{**FAST, **policy}), self.session)


@pytest.fixture
def world(sandbox: str, session: boto3.Session) -> World:
    settings = AwsSettings(region="us-east-1", endpoint_url=sandbox)
    clients = AwsClients(settings, session=session)
    vpc_id = clients.ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    for i in range(3):
        clients.ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.42.{i}.0/24")
    clients.ecs.create_cluster(clusterName="faults-cluster")
    clients.ecs.register_task_definition(
        family="faults-api",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "api", "image": "nginx", "essential": True}],
    )
    clients.ecs.create_service(
        cluster="faults-cluster",
        serviceName="faults-api",
        taskDefinition="faults-api",
        desiredCount=2,
        launchType="FARGATE",
    )
    clients.rds.create_db_instance(
        DBInstanceIdentifier="faults-db",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="platform",
        MasterUserPassword="sandbox-only-password",
    )
    return World(sandbox, session, vpc_id, "faults-cluster", "faults-api", "faults-db")


# --- one representative read per protocol, with the check that moto's real data came back ----


def _read_ec2(clients: AwsClients, w: World) -> None:
    [vpc] = clients.ec2.describe_vpcs(VpcIds=[w.vpc_id])["Vpcs"]
    assert (vpc["VpcId"], vpc["CidrBlock"]) == (w.vpc_id, "10.42.0.0/16")


def _read_ecs(clients: AwsClients, w: World) -> None:
    [svc] = clients.ecs.describe_services(cluster=w.cluster, services=[w.service])["services"]
    assert (svc["serviceName"], svc["desiredCount"]) == (w.service, 2)


def _read_rds(clients: AwsClients, w: World) -> None:
    [db] = clients.rds.describe_db_instances(DBInstanceIdentifier=w.db)["DBInstances"]
    assert (db["DBInstanceIdentifier"], db["DBInstanceClass"]) == (w.db, "db.t3.micro")


READS = {
    "ec2": ("DescribeVpcs", _read_ec2),
    "ecs": ("DescribeServices", _read_ecs),
    "rds": ("DescribeDBInstances", _read_rds),
}

# (service, fault, sends per call: botocore's attempts at it inside one outer attempt)
TRANSIENT = [
    pytest.param(
        "ec2", ec2_error("RequestLimitExceeded"), BOTOCORE_ATTEMPTS, id="ec2-RequestLimitExceeded"
    ),
    pytest.param(
        "ecs", json_error("ThrottlingException"), BOTOCORE_ATTEMPTS, id="ecs-ThrottlingException"
    ),
    pytest.param("rds", query_error("Throttling"), BOTOCORE_ATTEMPTS, id="rds-Throttling"),
    pytest.param("rds", HTML_503, BOTOCORE_ATTEMPTS, id="rds-503-html-page"),
    pytest.param(
        "ecs", json_error("ServerException", 500), BOTOCORE_ATTEMPTS, id="ecs-500-ServerException"
    ),
    pytest.param("ec2", CONNECTION_REFUSED, BOTOCORE_ATTEMPTS, id="ec2-connection-error"),
    pytest.param("rds", NGINX_502, 1, id="rds-502-unparsable-page"),
    pytest.param("ec2", ENVOY_503, 1, id="ec2-503-unparsable-text"),
    # The JSON protocols read a body that is not JSON as the message: botocore retries it.
    pytest.param("ecs", ENVOY_503, BOTOCORE_ATTEMPTS, id="ecs-503-text"),
]


# --- 1. transient faults are ridden out by botocore, then by the outer policy ----------------


@pytest.mark.usefixtures("fast_botocore_backoff")
@pytest.mark.parametrize("faults", [5, 7, 9])
@pytest.mark.parametrize(("service", "fault", "per_call"), TRANSIENT)
def test_transient_faults_beyond_botocore_are_survived(
    world: World, service: str, fault: Fault, per_call: int, faults: int
) -> None:
    # connect_attempts lifted: this is about the arithmetic, the connection budget is below.
    clients = world.clients(max_attempts=10, connect_attempts=10)
    operation, read = READS[service]
    injector = FaultInjector(clients.client(service), operation, fault, faults)

    read(clients, world)  # moto's real data, after `faults` spoiled sends

    assert injector.spoiled == faults
    assert injector.sends[operation] == faults + 1
    # botocore alone gives up after 4 sends (or 1); the outer policy made the extra calls.
    assert injector.calls[operation] == math.ceil((faults + 1) / per_call) > 1


def test_throttling_survived_with_botocore_real_backoff(world: World) -> None:
    """The same with botocore's own throttling backoff untouched (up to 1 + 2 + 4 s per call)."""
    clients = world.clients()
    injector = FaultInjector(clients.ec2, "DescribeVpcs", ec2_error("RequestLimitExceeded"), 5)
    _read_ec2(clients, world)
    assert (injector.sends["DescribeVpcs"], injector.calls["DescribeVpcs"]) == (6, 2)


@pytest.mark.usefixtures("fast_botocore_backoff")
@pytest.mark.parametrize("max_attempts", [1, 4])
@pytest.mark.parametrize(("service", "fault", "per_call"), TRANSIENT)
def test_endless_fault_fails_after_capped_attempts(
    world: World, service: str, fault: Fault, per_call: int, max_attempts: int
) -> None:
    policy = {"max_attempts": max_attempts, "max_seconds": 60.0, "connect_attempts": max_attempts}
    clients = world.clients(**policy)
    operation, read = READS[service]
    injector = FaultInjector(clients.client(service), operation, fault, faults=None)

    started = time.monotonic()
    with pytest.raises(AwsRetriesExhausted) as caught:
        read(clients, world)
    elapsed = time.monotonic() - started

    # A PhasegateError naming operation and resource, around the last transient error.
    error = caught.value
    assert (error.operation, error.attempts) == (operation, max_attempts)
    assert error.resource in {world.vpc_id, world.cluster, world.db}
    assert str(error).startswith(f"{operation} on {error.resource} failed after ")
    assert isinstance(error, PhasegateError) and error.exit_code == 1
    assert is_transient(error) and is_transient(error.__cause__)
    assert not isinstance(error, AwsCallError)  # a Prefect task retry may still try again
    if isinstance(error.__cause__, ClientError):  # still readable as the ClientError it was
        assert isinstance(error, ClientError) and error.response is error.__cause__.response
    assert injector.calls[operation] == max_attempts
    assert injector.sends[operation] == max_attempts * per_call
    assert elapsed < policy["max_seconds"]


@pytest.mark.usefixtures("fast_botocore_backoff")
def test_endless_fault_stops_at_the_time_cap(world: World) -> None:
    """With attempts to spare, max_seconds ends the retrying (overshoot <= one wait + call)."""
    # 3 s leaves room for several calls even on a loaded machine (a call here takes ms).
    clients = world.clients(max_attempts=1000, max_seconds=3.0)
    injector = FaultInjector(clients.rds, "DescribeDBInstances", query_error("Throttling"), None)
    started = time.monotonic()
    with pytest.raises(ClientError, match="Throttling"):
        _read_rds(clients, world)
    elapsed = time.monotonic() - started
    assert 2 <= injector.calls["DescribeDBInstances"] < 1000
    assert 3.0 <= elapsed < 3.0 + 10.0  # generous: one capped wait and one call past the cap


# --- 2. permanent errors fail at once, naming operation and resource -------------------------

PERMANENT = [
    pytest.param(
        "rds",
        "modify_db_instance",
        {"DBInstanceIdentifier": "faults-db", "DBInstanceClass": "db.t4g.micro"},
        query_error("AccessDenied", 403),
        "ModifyDBInstance",
        "faults-db",
        id="rds-403-AccessDenied",
    ),
    pytest.param(
        "ecs",
        "update_service",
        {"cluster": "faults-cluster", "service": "faults-api", "desiredCount": 0},
        json_error("AccessDeniedException"),
        "UpdateService",
        "faults-api",
        id="ecs-AccessDeniedException",
    ),
    pytest.param(
        "ec2",
        "delete_nat_gateway",
        {"NatGatewayId": "nat-0a1b2c3d4e5f60718"},
        ec2_error("UnauthorizedOperation", 403),
        "DeleteNatGateway",
        "nat-0a1b2c3d4e5f60718",
        id="ec2-403-UnauthorizedOperation",
    ),
    pytest.param(
        "ec2",
        "delete_nat_gateway",
        {"NatGatewayId": "nat-0a1b2c3d4e5f60718"},
        ec2_error("NatGatewayNotFound"),
        "DeleteNatGateway",
        "nat-0a1b2c3d4e5f60718",
        id="ec2-NatGatewayNotFound",
    ),
    pytest.param(
        "rds",
        "modify_db_instance",
        {"DBInstanceIdentifier": "faults-db", "DBInstanceClass": "db.t4g.micro"},
        query_error("ValidationError"),
        "ModifyDBInstance",
        "faults-db",
        id="rds-ValidationError",
    ),
    # Real errors from moto itself, nothing injected:
    pytest.param(
        "rds",
        "describe_db_instances",
        {"DBInstanceIdentifier": "nope"},
        None,
        "DescribeDBInstances",
        "nope",
        id="moto-DBInstanceNotFound",
    ),
    pytest.param(
        "ecs",
        "update_service",
        {"cluster": "faults-cluster", "service": "nope", "desiredCount": 1},
        None,
        "UpdateService",
        "nope",
        id="moto-ServiceNotFoundException",
    ),
    pytest.param(
        "ec2",
        "describe_vpcs",
        {"VpcIds": ["vpc-0123456789abcdef0"]},
        None,
        "DescribeVpcs",
        "vpc-0123456789abcdef0",
        id="moto-InvalidVpcID.NotFound",
    ),
    pytest.param(
        "autoscaling",
        "update_auto_scaling_group",
        {"AutoScalingGroupName": "faults-asg", "MinSize": 1},
        None,
        "UpdateAutoScalingGroup",
        "faults-asg",
        id="moto-ValidationError",
    ),
]


@pytest.mark.parametrize(
    ("service", "method", "params", "fault", "operation", "resource"), PERMANENT
)
def test_permanent_errors_fail_at_once_naming_the_resource(
    world: World,
    service: str,
    method: str,
    params: dict[str, Any],
    fault: Fault | None,
    operation: str,
    resource: str,
) -> None:
    clients = world.clients(max_attempts=8)
    client = clients.client(service)
    injector = FaultInjector(client, operation, fault or Fault("none"), 1 if fault else 0)

    with pytest.raises(AwsCallError) as caught:
        getattr(client, method)(**params)

    error = caught.value
    assert injector.sends[operation] == 1
    assert injector.calls[operation] == 1
    assert (error.operation, error.resource) == (operation, resource)
    assert str(error).startswith(f"{operation} on {resource} failed: {error.code}: ")
    assert isinstance(error, PhasegateError) and error.exit_code == 1
    if fault is not None:
        assert error.code in fault.label
    # Still the botocore error it replaces, so waiters and callers can read its code.
    assert isinstance(error, ClientError)
    assert error.response["Error"]["Code"] == error.code
    assert not is_transient(error)


def test_permanent_error_survives_pickling(world: World) -> None:
    """Prefect may pickle a task's exception; the error must come back whole."""
    clients = world.clients()
    with pytest.raises(AwsCallError) as caught:
        clients.rds.describe_db_instances(DBInstanceIdentifier="nope")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is type(caught.value)
    assert str(copy) == str(caught.value)
    assert (copy.operation, copy.resource, copy.code) == (
        "DescribeDBInstances",
        "nope",
        "DBInstanceNotFound",
    )


# --- 3. paginators and waiters go through the policy too -------------------------------------


@pytest.mark.usefixtures("fast_botocore_backoff")
def test_paginator_survives_throttling_mid_pagination(world: World) -> None:
    clients = world.clients()
    ec2 = clients.ec2
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    for _ in range(3):  # three reservations; moto pages describe_instances by reservation
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    clean = list(ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 1}))
    assert len(clean) == 3  # really three pages

    # Page 1 goes through; the request for page 2 is throttled 7 times over.
    injector = FaultInjector(ec2, "DescribeInstances", ec2_error("RequestLimitExceeded"), 7, 1)
    pages = list(ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 1}))

    def ids(pages: list[dict]) -> list[str]:
        return [r["ReservationId"] for page in pages for r in page["Reservations"]]

    assert ids(pages) == ids(clean)
    assert injector.spoiled == 7
    assert injector.sends["DescribeInstances"] == 3 + 7
    assert injector.calls["DescribeInstances"] == 1 + math.ceil(8 / BOTOCORE_ATTEMPTS) + 1


@pytest.mark.usefixtures("fast_botocore_backoff")
def test_waiter_survives_throttling(world: World) -> None:
    """Without the outer policy the waiter's first poll would end it with a WaiterError."""
    clients = world.clients()
    injector = FaultInjector(clients.rds, "DescribeDBInstances", query_error("Throttling"), 5)
    clients.rds.get_waiter("db_instance_available").wait(
        DBInstanceIdentifier=world.db, WaiterConfig={"Delay": 0, "MaxAttempts": 2}
    )
    assert injector.sends["DescribeDBInstances"] == 6
    assert injector.calls["DescribeDBInstances"] == 2


def test_waiter_error_acceptor_still_matches(world: World) -> None:
    """`db_instance_deleted` succeeds on DBInstanceNotFound: the policy must not hide it."""
    clients = world.clients()
    clients.rds.delete_db_instance(DBInstanceIdentifier=world.db, SkipFinalSnapshot=True)
    clients.rds.get_waiter("db_instance_deleted").wait(
        DBInstanceIdentifier=world.db, WaiterConfig={"Delay": 0, "MaxAttempts": 2}
    )


# --- 4. what another try cannot fix, or need not: connection budget, bad parameters, lost answers


@pytest.mark.usefixtures("fast_botocore_backoff")
def test_unconnectable_endpoint_gets_a_short_budget(world: World) -> None:
    """A refused connection is retried connect_attempts (default 2) times, not max_attempts."""
    clients = world.clients(max_attempts=8)
    injector = FaultInjector(clients.ec2, "DescribeVpcs", CONNECTION_REFUSED, faults=None)
    with pytest.raises(AwsRetriesExhausted) as caught:
        _read_ec2(clients, world)
    assert injector.calls["DescribeVpcs"] == 2
    assert injector.sends["DescribeVpcs"] == 2 * BOTOCORE_ATTEMPTS
    assert str(caught.value) == (
        f"DescribeVpcs on {world.vpc_id} failed after 2 attempts: "
        f'Could not connect to the endpoint URL: "{world.sandbox}/"'
    )
    assert isinstance(caught.value.__cause__, EndpointConnectionError)


def _calls_at_sandbox(sandbox: str, action: str) -> int:
    log = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    return sum(1 for call in log if call["action"] == action)


def test_param_validation_error_is_not_retried(world: World) -> None:
    """botocore refuses bad parameters before sending: one attempt, nothing sent, raised once."""
    clients = world.clients(max_attempts=8)
    injector = FaultInjector(clients.ec2, "DeleteNatGateway", Fault("none"), faults=0)
    with pytest.raises(ParamValidationError, match="NatGatewayId"):
        clients.ec2.delete_nat_gateway(NatGatewayIds=["nat-0a1b2c3d4e5f60718"])
    assert injector.calls["DeleteNatGateway"] == 1
    assert injector.sends["DeleteNatGateway"] == 0
    assert _calls_at_sandbox(world.sandbox, "DeleteNatGateway") == 0


def _security_group(clients: AwsClients, w: World) -> dict[str, str]:
    group = clients.ec2.create_security_group(GroupName="gone", Description="x", VpcId=w.vpc_id)
    return {"GroupId": group["GroupId"]}


def _elastic_ip(clients: AwsClients, w: World) -> dict[str, str]:
    return {"AllocationId": clients.ec2.allocate_address(Domain="vpc")["AllocationId"]}


REMOVALS = [
    pytest.param("delete_security_group", "DeleteSecurityGroup", _security_group, id="sg"),
    pytest.param("release_address", "ReleaseAddress", _elastic_ip, id="eip"),
]


@pytest.mark.usefixtures("fast_botocore_backoff")
@pytest.mark.parametrize(("method", "action", "make"), REMOVALS)
def test_removal_whose_answer_was_lost_counts_as_done(
    world: World, method: str, action: str, make: Any
) -> None:
    """A 500 on the first try, "not found" on the retry: the first try removed it.

    The sandbox's fault answers without reaching moto, so the first try's effect is staged:
    the resource is removed beforehand by another client; the removal under test then gets
    the 500 (a lost answer), and botocore's retry reaches moto and gets NotFound.
    """
    other = world.clients()
    params = make(other, world)
    getattr(other.ec2, method)(**params)  # what the lost first try did
    fault = {"action": action, "code": "InternalError", "status": 500, "times": 1}
    requests.post(f"{world.sandbox}/_phasegate/faults", json=fault, timeout=10).raise_for_status()

    clients = world.clients()
    response = getattr(clients.ec2, method)(**params)

    assert response["ResponseMetadata"][ASSUMED_DONE] is True
    # The earlier removal, the faulted try, the retry that answered not-found.
    assert _calls_at_sandbox(world.sandbox, action) == 3


@pytest.mark.parametrize(("method", "action", "make"), REMOVALS)
def test_removal_of_a_missing_resource_still_fails(
    world: World, method: str, action: str, make: Any
) -> None:
    """Not found without a lost answer, or after a connection that never opened, is an error."""
    clients = world.clients()
    params = make(clients, world)
    getattr(clients.ec2, method)(**params)
    with pytest.raises(AwsCallError, match="NotFound"):
        getattr(clients.ec2, method)(**params)

    # A refused connection sent nothing: the NotFound that follows is the truth, not a lost win.
    injector = FaultInjector(clients.ec2, action, CONNECTION_REFUSED, faults=1)
    with pytest.raises(AwsCallError, match="NotFound"):
        getattr(clients.ec2, method)(**params)
    assert injector.sends[action] == 2


def test_lost_answer_between_policy_attempts_counts_too() -> None:
    """The same across the policy's own attempts: a closed connection, then not-found."""
    answers: list[Exception] = [
        ConnectionClosedError(endpoint_url="http://x"),
        _client_error("InvalidNatGatewayID.NotFound", 400),
    ]

    def call(operation: str, params: dict[str, Any]) -> Any:
        raise answers.pop(0)

    response = RetryPolicy(**FAST).call("DeleteNatGateway", call, {"NatGatewayId": "nat-1"})
    assert response["ResponseMetadata"][ASSUMED_DONE] is True and answers == []


def test_lost_answer_of_a_read_then_not_found_still_fails() -> None:
    answers = [_client_error("InternalError", 500), _client_error("DBSnapshotNotFound", 404)]

    def call(operation: str, params: dict[str, Any]) -> Any:
        raise answers.pop(0)

    with pytest.raises(AwsCallError, match="DescribeDBSnapshots on snap-1 failed"):
        RetryPolicy(**FAST).call("DescribeDBSnapshots", call, {"DBSnapshotIdentifier": "snap-1"})


def test_param_validation_error_is_one_attempt_of_the_policy() -> None:
    attempts = 0

    def call(operation: str, params: dict[str, Any]) -> Any:
        nonlocal attempts
        attempts += 1
        raise ParamValidationError(report="Missing required parameter")

    with pytest.raises(ParamValidationError):
        RetryPolicy(**FAST).call("DeleteNatGateway", call, {})
    assert attempts == 1


def test_retries_exhausted_survives_pickling() -> None:
    def call(operation: str, params: dict[str, Any]) -> Any:
        raise _client_error("Throttling", 400)

    with pytest.raises(AwsRetriesExhausted) as caught:
        RetryPolicy(max_attempts=2, **FAST).call("DescribeVpcs", call, {"VpcId": "vpc-1"})
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is type(caught.value) and str(copy) == str(caught.value)
    assert str(copy) == "DescribeVpcs on vpc-1 failed after 2 attempts: Throttling: m"
    assert copy.response["Error"]["Code"] == "Throttling"


# --- the policy on its own: classification, resource naming, backoff bounds ------------------


def _client_error(code: str, status: int) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "DescribeThings")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("Throttling", 400, True),
        ("ThrottlingException", 400, True),
        ("RequestLimitExceeded", 503, True),
        ("TooManyRequestsException", 429, True),
        ("InternalError", 500, True),
        ("ServiceUnavailable", 503, True),
        ("AccessDenied", 403, False),
        ("AccessDeniedException", 400, False),
        ("ValidationError", 400, False),
        ("DBInstanceNotFound", 404, False),
    ],
)
def test_is_transient(code: str, status: int, transient: bool) -> None:
    assert is_transient(_client_error(code, status)) is transient


def test_is_transient_connection_trouble_but_not_other_exceptions() -> None:
    assert is_transient(EndpointConnectionError(endpoint_url="http://x"))
    assert is_transient(ConnectionClosedError(endpoint_url="http://x"))
    assert is_transient(ResponseParserError("Unable to parse response"))
    assert not is_transient(ValueError("x"))
    assert not is_transient(ParamValidationError(report="Missing required parameter"))


def test_lost_response_is_what_may_have_happened() -> None:
    assert lost_response(_client_error("InternalError", 500))
    assert lost_response(ConnectionClosedError(endpoint_url="http://x"))
    assert lost_response(status=503)
    assert not lost_response(EndpointConnectionError(endpoint_url="http://x"))  # never sent
    assert not lost_response(_client_error("Throttling", 400))


def test_resource_of_prefers_the_most_specific_key() -> None:
    assert resource_of({"cluster": "c", "service": "s"}) == "s"
    assert resource_of({"NatGatewayIds": ["nat-1", "nat-2"]}) == "nat-1, nat-2"
    assert resource_of({}) == "(no resource named)"


def _always_throttled(policy: RetryPolicy) -> tuple[int, float]:
    attempts = 0

    def call(operation: str, params: dict[str, Any]) -> Any:
        nonlocal attempts
        attempts += 1
        raise _client_error("Throttling", 400)

    started = time.monotonic()
    with pytest.raises(ClientError):
        policy.call("DescribeThings", call, {})
    return attempts, time.monotonic() - started


def test_policy_backoff_grows_and_is_capped() -> None:
    # Waits: 0.01, 0.02, 0.04, then 0.05 (the cap) x 6, each plus jitter in [0, 0.01].
    attempts, elapsed = _always_throttled(RetryPolicy(max_attempts=10, **FAST))
    assert attempts == 10
    assert elapsed >= 0.01 + 0.02 + 0.04 + 6 * 0.05  # it really backs off
    assert elapsed < 3.0  # uncapped it would be 0.01 * (2**9 - 1) = 5.11 s; generous bound


def test_policy_time_cap_ends_retrying() -> None:
    attempts, elapsed = _always_throttled(RetryPolicy(max_attempts=10_000, max_seconds=0.3, **FAST))
    assert 2 <= attempts < 10_000
    assert 0.3 <= elapsed < 0.3 + 2.0


def test_default_botocore_config_is_standard_three_attempts(sandbox: str) -> None:
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    # botocore reads max_attempts here as retries: 1 + 3 = BOTOCORE_ATTEMPTS sends per call.
    retries = clients.rds.meta.config.retries
    assert retries == {"mode": "standard", "total_max_attempts": BOTOCORE_ATTEMPTS}
    assert clients.rds is clients.client("rds")  # made once, shared
