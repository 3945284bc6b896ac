"""Before a command reaches AWS: can this environment's endpoint be reached, with its credentials?

Without this, a command run with the sandbox stopped (or offline, or with expired SSO) spends a
minute in retries and ends in a botocore traceback. The CLI calls `reachable_environment(ENV)`
first instead: one sts:GetCallerIdentity with a short connect timeout and two sends, and on
failure one line naming the environment, the endpoint and what to do. With `aws.role_arn` this
call is also the first AssumeRole (role credentials are lazy, see phasegate.aws), so a role
that cannot be assumed is reported here too, before any flow starts.
"""

from urllib.parse import urlsplit

from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    SSOError,
    TokenRetrievalError,
)

from phasegate.aws import make_session
from phasegate.config import EnvironmentConfig, load_environment
from phasegate.errors import AwsCredentialsError, AwsUnreachable
from phasegate.retry import is_transient

CONNECT_TIMEOUT = 3
READ_TIMEOUT = 10
PREFLIGHT_CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT,
    read_timeout=READ_TIMEOUT,
    retries={"mode": "standard", "total_max_attempts": 2},
)
SANDBOX_DEFAULT_PORT = 4566
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}

_CREDENTIAL_ERRORS = (
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
    CredentialRetrievalError,
)


def reachable_environment(env: str) -> EnvironmentConfig:
    """The config of ENV (a name or a path), once its AWS endpoint has answered."""
    config = load_environment(env)
    check_aws(config)
    return config


def check_aws(config: EnvironmentConfig) -> str:
    """The ARN AWS sees for `config`'s credentials; AwsUnreachable or AwsCredentialsError if none.

    A throttled or 5xx answer passes: AWS was reached, and the command's own retries ride it out.
    """
    aws = config.aws
    try:
        session = make_session(aws, sts_config=PREFLIGHT_CONFIG)
        sts = session.client(
            "sts", region_name=aws.region, endpoint_url=aws.endpoint_url, config=PREFLIGHT_CONFIG
        )
        return sts.get_caller_identity()["Arn"]
    except (ConnectionError, HTTPClientError) as exc:
        raise AwsUnreachable(unreachable_message(config, exc)) from None
    except _CREDENTIAL_ERRORS as exc:
        raise AwsCredentialsError(
            f"{config.name}: no usable AWS credentials ({_one_line(exc)}); "
            f"{_credentials_hint(config)}"
        ) from None
    except ClientError as exc:
        if is_transient(exc):
            return ""
        error = exc.response.get("Error", {})
        what = (
            f"cannot assume {aws.role_arn}"
            if exc.operation_name == "AssumeRole"
            else "AWS refused the credentials"
        )
        raise AwsCredentialsError(
            f"{config.name}: {what} ({error.get('Code', 'Unknown')}: "
            f"{_one_line(error.get('Message', ''))}); {_credentials_hint(config)}"
        ) from None


def unreachable_message(config: EnvironmentConfig, error: BaseException) -> str:
    """One line: the environment, the endpoint, why, and what to do."""
    aws = config.aws
    why = _why(error)
    if aws.endpoint_url:
        parts = urlsplit(aws.endpoint_url)
        up = "phasegate sandbox up"
        if parts.hostname in _LOCAL_HOSTS and parts.port not in (None, SANDBOX_DEFAULT_PORT):
            up += f" --port {parts.port}"
        where = f" in {config.source}" if config.source else ""
        return (
            f"{config.name}: cannot reach the AWS endpoint {aws.endpoint_url} ({why}); "
            f"start the sandbox with `{up}`, or correct aws.endpoint_url{where}"
        )
    return (
        f"{config.name}: cannot reach AWS STS in {aws.region} ({why}); check the network "
        f"(proxy, VPN), the region (aws.region) and {_credentials_hint(config, verb='the')}"
    )


def _why(error: BaseException) -> str:
    if isinstance(error, ConnectTimeoutError):
        return f"no connection within {CONNECT_TIMEOUT} s"
    if isinstance(error, EndpointConnectionError):
        return "connection refused or host not found"
    if isinstance(error, ReadTimeoutError):
        return f"no answer within {READ_TIMEOUT} s"
    return _one_line(error)


def _credentials_hint(config: EnvironmentConfig, verb: str = "check") -> str:
    aws = config.aws
    if aws.profile:
        what = f"profile {aws.profile} (aws sso login --profile {aws.profile} if it is SSO)"
    else:
        what = "credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, aws.profile)"
    if aws.role_arn:
        what += f" and that they may assume {aws.role_arn}"
    return f"{verb} {what}"


def _one_line(value: object) -> str:
    return " ".join(str(value).split())
