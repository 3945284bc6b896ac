"""The one place boto3 sessions and clients are made.

Sessions are not thread-safe but clients are, so an `AwsClients` makes each client once, up
front or on first use under a lock, and hands the same client to every thread. Every client
runs its calls through the RetryPolicy, so paginators and waiters are covered too.

Credentials last as long as the run: a role (`aws.role_arn`) is assumed through botocore's
refreshing credentials, so a call after they expire (a long approval, an RDS wait) assumes the
role again. Profiles (role chains, SSO) refresh the same way through botocore's own providers.
"""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import NoCredentialsError

from phasegate import deadline
from phasegate.config import AwsSettings
from phasegate.retry import RetryPolicy, note_send, resource_of

_BOTOCORE_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=10,
    read_timeout=60,
    max_pool_connections=32,
)

# The STS client that assumes `aws.role_arn` (again, whenever the credentials near expiry).
STS_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20
)
ROLE_SESSION_NAME = "phasegate"


class _NoCache(dict[str, Any]):
    """The fetcher's cache, kept empty: the refreshable credentials hold what it fetched.

    botocore's default in-memory cache would hand back the same credentials until 15 minutes
    before they expire, even when the refreshable credentials ask for new ones.
    """

    def __setitem__(self, key: str, value: Any) -> None:
        pass


class _RoleCredentials(CredentialProvider):
    """The only provider of a role session: credentials that assume the role when needed."""

    METHOD = "phasegate-assume-role"

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


_MODELS = botocore.loaders.create_loader(os.environ.get("AWS_DATA_PATH"))
"""One loader of botocore's service models for every session of the process. Each session
otherwise parses its own copy of each model it makes a client for (measured: about 55 MB per
session for phase 1's services), and a run makes several sessions (steps, gate, cost
snapshots). The loader only reads botocore's JSON (and AWS_DATA_PATH's, as a session would):
the same for every session."""


def make_session(settings: AwsSettings, *, sts_config: Config | None = None) -> boto3.Session:
    """A session for the settings' profile or role, else the standard credential chain.

    With `aws.role_arn` the role is assumed lazily, on the first call that needs credentials
    (making a session or clients does no I/O; `phasegate.preflight` makes that first call up
    front in the CLI), and again whenever the credentials near expiry. STS is reached at
    `aws.endpoint_url` like every other service. `sts_config` is the botocore config of that
    STS client (default STS_CONFIG).
    """
    session = boto3.Session(profile_name=settings.profile, region_name=settings.region)
    if settings.endpoint_url and session.get_credentials() is None:
        # A local stand-in (the sandbox) needs some credentials, never real ones.
        session = boto3.Session(
            aws_access_key_id="phasegate-sandbox",
            aws_secret_access_key="phasegate-sandbox",
            region_name=settings.region,
        )
    if settings.role_arn:
        session = _role_session(session, settings, sts_config or STS_CONFIG)
    session._session.register_component("data_loader", _MODELS)
    return session


def _role_session(
    source: boto3.Session, settings: AwsSettings, sts_config: Config
) -> boto3.Session:
    """A session whose credentials assume `settings.role_arn` from `source`'s, and refresh."""
    assert settings.role_arn is not None
    source_credentials = source.get_credentials()

    def sts_client(service_name: str, **kwargs: Any) -> Any:
        return source.client(
            service_name,
            region_name=settings.region,
            endpoint_url=settings.endpoint_url,
            config=sts_config,
            **kwargs,
        )

    fetcher = AssumeRoleCredentialFetcher(
        client_creator=sts_client,
        source_credentials=source_credentials,
        role_arn=settings.role_arn,
        extra_args={"RoleSessionName": ROLE_SESSION_NAME},
        cache=_NoCache(),
    )

    def assume_role() -> dict[str, Any]:
        if source_credentials is None:
            raise NoCredentialsError()
        return fetcher.fetch_credentials()

    credentials = DeferredRefreshableCredentials(
        refresh_using=assume_role, method=_RoleCredentials.METHOD
    )
    core = botocore.session.Session(profile=settings.profile)
    core.register_component(
        "credential_provider", CredentialResolver(providers=[_RoleCredentials(credentials)])
    )
    return boto3.Session(botocore_session=core, region_name=settings.region)


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
        deadline.check(f"{operation} on {resource_of(params)}")  # stops a step past its timeout
        calls = _recorded_calls.get()
        if calls is not None:
            calls.append(f"{prefix}:{operation}")
        return policy.call(operation, make_api_call, params)

    client._make_api_call = retried
    # Every HTTP send, botocore's own retries included, so the policy knows of lost answers.
    client.meta.events.register("response-received", _report_send)
    return client


def _report_send(
    response_dict: dict[str, Any] | None = None, exception: BaseException | None = None, **_: Any
) -> None:
    note_send(response_dict.get("status_code") if response_dict else None, exception)


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
