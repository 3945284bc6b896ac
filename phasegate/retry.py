"""Which AWS errors are worth another try, and the tenacity policy that tries again.

botocore's `standard` mode already retries a throttled or 5xx call a few times inside one
call. This policy wraps the whole call so that a longer burst of throttling (a busy account
during a fleet migration) is ridden out with capped exponential backoff and jitter. Access,
validation and not-found errors (and botocore's ParamValidationError, raised before anything
is sent) are never retried: they fail at once, naming the resource.

Three refinements:

- An endpoint that cannot be connected to at all (connection refused, connect timeout) gets a
  short budget, `connect_attempts` attempts: a refused connection is not worth two minutes.
- A removal (Delete*, Release*, ...) whose answer was lost (a 5xx, a connection closed or a
  read timeout: AWS may have done it) and whose retry then answers "not found" is done: the
  first try removed it. The call returns an empty success response instead of failing.
- A transient error that outlasts the retries becomes an AwsRetriesExhausted naming the
  operation and the resource (still a ClientError, with its `.response`, when it was one).
"""

import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
)
from botocore.parsers import ResponseParserError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from phasegate.errors import AwsCallError, AwsRetriesExhausted

log = logging.getLogger(__name__)

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "PriorRequestNotComplete",
    }
)

# Identifiers worth naming in an error, most specific first.
_RESOURCE_KEYS = (
    "DBInstanceIdentifier", "DBSnapshotIdentifier", "ReplicationGroupId", "CacheClusterId",
    "NatGatewayId", "AllocationId", "RouteTableId", "VpcId", "SubnetId", "GroupId",
    "LoadBalancerArn", "TargetGroupArn", "AutoScalingGroupName", "LaunchTemplateName",
    "service", "cluster", "taskDefinition", "family", "ResourceId", "ResourceARN",
    "ResourceName", "resourceArn", "DashboardName", "AlarmName", "TopicArn", "Name",
    "NatGatewayIds", "VpcIds", "SubnetIds", "DBInstanceIdentifiers", "services",
)  # fmt: skip


# Operations that remove something: after a lost answer, "not found" on the retry means done.
REMOVAL_PREFIXES = (
    "Delete", "Release", "Deregister", "Disassociate", "Detach", "Terminate", "Revoke",
)  # fmt: skip

# The key phasegate adds to ResponseMetadata of a removal it counted as done (see module doc).
ASSUMED_DONE = "PhasegateAssumedDone"


def cannot_connect(error: BaseException | None) -> bool:
    """True when no connection could be made (refused, connect timeout, proxy): nothing was sent."""
    return isinstance(error, ConnectionError)


def lost_response(error: BaseException | None = None, status: int | None = None) -> bool:
    """True when a request may have been carried out although its answer was lost.

    A 5xx (or an unparsable gateway page), a connection closed mid-answer, a read timeout. Not
    a failure to connect: then the request never left.
    """
    if status is not None and status >= 500:
        return True
    if isinstance(error, HTTPClientError | ResponseParserError):
        return True
    if isinstance(error, ClientError):
        return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
    return False


def is_transient(error: BaseException) -> bool:
    """True for throttling, 5xx and connection trouble; False for everything a retry won't fix.

    A 5xx page that is not AWS's XML/JSON (a gateway's or proxy's `<!DOCTYPE html>` page)
    reaches us as ResponseParserError, which botocore itself never retries. An
    AwsRetriesExhausted is transient too: a later try (a task retry) may succeed.
    """
    if isinstance(error, AwsRetriesExhausted):
        return True
    if cannot_connect(error) or isinstance(error, HTTPClientError | ResponseParserError):
        return True
    if not isinstance(error, ClientError):
        return False
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in THROTTLING_CODES or status >= 500


def is_not_found(code: str) -> bool:
    """InvalidNatGatewayID.NotFound, NatGatewayNotFound, DBSnapshotNotFound, NoSuchEntity..."""
    return "NotFound" in code or code.startswith("NoSuch")


def is_removal(operation: str) -> bool:
    return operation.startswith(REMOVAL_PREFIXES)


@dataclass
class _CallState:
    """What one policy call has seen so far, over all its attempts and botocore's sends."""

    lost_response: bool = False
    connect_failures: int = 0
    attempts: int = 0


_call_state: ContextVar[_CallState | None] = ContextVar("phasegate_retry_call", default=None)


def note_send(status: int | None, error: BaseException | None) -> None:
    """Tell the policy call in progress in this thread how one HTTP send of it ended.

    botocore retries inside one attempt of the policy, so a 5xx its second send turned into a
    "not found" never reaches the policy as an exception: phasegate.aws reports every send
    here (botocore's `response-received` event).
    """
    state = _call_state.get()
    if state is not None and lost_response(error, status):
        state.lost_response = True


def resource_of(params: dict[str, Any]) -> str:
    """The resource a call is about, from its parameters, for error messages."""
    for key in _RESOURCE_KEYS:
        if key in params:
            value = params[key]
            return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return "(no resource named)"


class AwsCallClientError(AwsCallError, ClientError):
    """The AwsCallError a permanent ClientError becomes, still a ClientError with its `.response`.

    botocore's waiters catch ClientError to match error acceptors (DBInstanceNotFound is the
    success of `db_instance_deleted`, NatGatewayNotFound of `nat_gateway_deleted`), and callers
    may check `.response["Error"]["Code"]`; both keep working under the policy.
    """

    def __init__(
        self, operation: str, resource: str, code: str, message: str, response: Any
    ) -> None:
        # The bases' __init__ chains do not compose (ClientError wants the response), so the
        # fields of both are set here, with AwsCallError's message.
        Exception.__init__(self, f"{operation} on {resource} failed: {code}: {message}")
        self.operation, self.resource, self.code = operation, resource, code
        self.response, self.operation_name = response, operation
        self._message = message

    def __reduce__(self) -> Any:
        return type(self), (self.operation, self.resource, self.code, self._message, self.response)


class AwsRetriesExhaustedClientError(AwsRetriesExhausted, ClientError):
    """The AwsRetriesExhausted a transient ClientError becomes, still a ClientError.

    Waiters read the `.response` of a ClientError (and fail on an error no acceptor matches),
    callers may check `.response["Error"]["Code"]`; both keep working.
    """

    def __init__(self, operation: str, resource: str, attempts: int, response: Any) -> None:
        error = response.get("Error", {})
        reason = f"{error.get('Code', 'Unknown')}: {error.get('Message', '')}"
        AwsRetriesExhausted.__init__(self, operation, resource, attempts, reason)
        self.response, self.operation_name = response, operation

    def __reduce__(self) -> Any:
        return type(self), (self.operation, self.resource, self.attempts, self.response)


class _ConnectBudgetSpent(stop_base):
    """Stop once `limit` attempts in one call could not even connect."""

    def __init__(self, state: _CallState, limit: int) -> None:
        self.state, self.limit = state, limit

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        return cannot_connect(error) and self.state.connect_failures >= self.limit


class RetryPolicy:
    """Exponential backoff with jitter, capped in attempts and in total time."""

    def __init__(
        self,
        max_attempts: int = 8,
        max_seconds: float = 120.0,
        initial_wait: float = 0.2,
        max_wait: float = 10.0,
        connect_attempts: int = 2,
    ) -> None:
        self.max_attempts = max_attempts
        self.max_seconds = max_seconds
        self.initial_wait = initial_wait
        self.max_wait = max_wait
        self.connect_attempts = connect_attempts

    def call(self, operation: str, func: Callable[..., Any], params: dict[str, Any]) -> Any:
        """Run one AWS call under the policy.

        A permanent error becomes an AwsCallError, a transient one that outlasts the retries an
        AwsRetriesExhausted; a removal whose lost answer hid its success returns as done.
        """
        state = _CallState()
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.max_attempts)
            | stop_after_delay(self.max_seconds)
            | _ConnectBudgetSpent(state, self.connect_attempts),
            wait=wait_exponential_jitter(
                multiplier=self.initial_wait, max=self.max_wait, jitter=self.initial_wait
            ),
            reraise=True,
        )

        def attempt(operation: str, params: dict[str, Any]) -> Any:
            state.attempts += 1
            try:
                return func(operation, params)
            except Exception as exc:
                state.lost_response |= lost_response(exc)
                state.connect_failures += cannot_connect(exc)
                raise

        token = _call_state.set(state)
        try:
            return retrying(attempt, operation, params)
        except ClientError as exc:
            resource = resource_of(params)
            if is_transient(exc):
                raise AwsRetriesExhaustedClientError(
                    operation, resource, state.attempts, exc.response
                ) from exc
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            if state.lost_response and is_removal(operation) and is_not_found(code):
                log.warning(
                    "%s on %s: an earlier try's answer was lost and the retry answers %s; "
                    "the earlier try did it, counted as done",
                    operation,
                    resource,
                    code,
                )
                return {"ResponseMetadata": {"HTTPStatusCode": 200, ASSUMED_DONE: True}}
            raise AwsCallClientError(
                operation, resource, code, error.get("Message", str(exc)), exc.response
            ) from exc
        except (BotoCoreError, ResponseParserError) as exc:
            if not is_transient(exc):
                raise  # ParamValidationError, NoCredentialsError...: a bug or setup, as is
            raise AwsRetriesExhausted(
                operation, resource_of(params), state.attempts, str(exc)
            ) from exc
        finally:
            _call_state.reset(token)
