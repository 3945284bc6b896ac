"""Which AWS errors are worth another try, and the tenacity policy that tries again.

botocore's `standard` mode already retries a throttled or 5xx call a few times inside one
call. This policy wraps the whole call so that a longer burst of throttling (a busy account
during a fleet migration) is ridden out with capped exponential backoff and jitter. Access,
validation and not-found errors are never retried: they fail at once, naming the resource.
"""

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError
from botocore.parsers import ResponseParserError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from phasegate.errors import AwsCallError

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


def is_transient(error: BaseException) -> bool:
    """True for throttling, 5xx and connection trouble; False for everything a retry won't fix.

    A 5xx page that is not AWS's XML/JSON (a gateway's or proxy's `<!DOCTYPE html>` page)
    reaches us as ResponseParserError, which botocore itself never retries.
    """
    if isinstance(error, ConnectionError | ReadTimeoutError | ResponseParserError):
        return True
    if not isinstance(error, ClientError):
        return False
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in THROTTLING_CODES or status >= 500


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


class RetryPolicy:
    """Exponential backoff with jitter, capped in attempts and in total time."""

    def __init__(
        self,
        max_attempts: int = 8,
        max_seconds: float = 120.0,
        initial_wait: float = 0.2,
        max_wait: float = 10.0,
    ) -> None:
        self.max_attempts = max_attempts
        self.max_seconds = max_seconds
        self.initial_wait = initial_wait
        self.max_wait = max_wait

    def call(self, operation: str, func: Callable[..., Any], params: dict[str, Any]) -> Any:
        """Run one AWS call under the policy; a permanent error becomes an AwsCallError."""
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_seconds),
            wait=wait_exponential_jitter(
                multiplier=self.initial_wait, max=self.max_wait, jitter=self.initial_wait
            ),
            reraise=True,
        )
        try:
            return retrying(func, operation, params)
        except ClientError as exc:
            if is_transient(exc):
                raise
            error = exc.response.get("Error", {})
            raise AwsCallClientError(
                operation,
                resource_of(params),
                error.get("Code", "Unknown"),
                error.get("Message", str(exc)),
                exc.response,
            ) from exc
