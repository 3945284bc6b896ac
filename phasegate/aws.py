"""The one place boto3 sessions and clients are made.

Sessions are not thread-safe but clients are, so an `AwsClients` makes each client once, up
front or on first use under a lock, and hands the same client to every thread. Every client
runs its calls through the RetryPolicy, so paginators and waiters are covered too.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import boto3
from botocore.config import Config

from phasegate.config import AwsSettings
from phasegate.retry import RetryPolicy

_BOTOCORE_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=10,
    read_timeout=60,
    max_pool_connections=32,
)


def make_session(settings: AwsSettings) -> boto3.Session:
    """A session for the settings' profile or role, else the standard credential chain."""
    session = boto3.Session(profile_name=settings.profile, region_name=settings.region)
    if settings.endpoint_url and session.get_credentials() is None:
        # A local stand-in (the sandbox) needs some credentials, never real ones.
        session = boto3.Session(
            aws_access_key_id="phasegate-sandbox",
            aws_secret_access_key="phasegate-sandbox",
            region_name=settings.region,
        )
    if settings.role_arn:
        creds = session.client("sts", endpoint_url=settings.endpoint_url).assume_role(
            RoleArn=settings.role_arn, RoleSessionName="phasegate"
        )["Credentials"]
        session = boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=settings.region,
        )
    return session


_recorded_calls: ContextVar[list[str] | None] = ContextVar("phasegate_aws_calls", default=None)


@contextmanager
def recording_calls() -> Iterator[list[str]]:
    """Collect "service:Operation" for every AWS call made in this context (thread or task).

    A step's Record lists the API actions it used, so an operator can audit a run and an
    IAM policy can be checked against what a step really calls.
    """
    calls: list[str] = []
    token = _recorded_calls.set(calls)
    try:
        yield calls
    finally:
        _recorded_calls.reset(token)


def _with_retries(client: Any, policy: RetryPolicy) -> Any:
    """Route every API call of `client` (methods, paginators, waiters) through `policy`."""
    make_api_call = client._make_api_call
    prefix = client.meta.service_model.signing_name

    def retried(operation: str, params: dict[str, Any]) -> Any:
        calls = _recorded_calls.get()
        if calls is not None:
            calls.append(f"{prefix}:{operation}")
        return policy.call(operation, make_api_call, params)

    client._make_api_call = retried
    return client


class AwsClients:
    """Thread-safe clients for one environment's account and region, made once each."""

    def __init__(
        self,
        settings: AwsSettings,
        policy: RetryPolicy | None = None,
        session: boto3.Session | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or RetryPolicy()
        self._session = session or make_session(settings)
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str | None = None) -> Any:
        """The shared client for `service` in `region` (default: the environment's region)."""
        key = (service, region or self.settings.region)
        with self._lock:
            if key not in self._clients:
                client = self._session.client(
                    service,
                    region_name=key[1],
                    endpoint_url=self.settings.endpoint_url,
                    config=_BOTOCORE_CONFIG,
                )
                self._clients[key] = _with_retries(client, self.policy)
            return self._clients[key]

    def __getattr__(self, service: str) -> Any:
        """`clients.ec2`, `clients.rds`, ...: the shared client of that service."""
        if service.startswith("_"):
            raise AttributeError(service)
        return self.client(service)
