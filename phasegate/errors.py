"""The errors a user can see, each carrying the process exit code it maps to.

The CLI turns any PhasegateError into one line on stderr and its exit code, so every
message here must stand on its own: it names the file, field, environment, step or
resource it is about.
"""


class PhasegateError(Exception):
    """A failure phasegate understands and can explain; exit code 1."""

    exit_code = 1


class ConfigError(PhasegateError):
    """Bad input: a config file, a flag or an argument; exit code 2, nothing changed."""

    exit_code = 2


class AwsCallError(PhasegateError):
    """An AWS call failed for a reason retrying cannot fix (access, validation, not found)."""

    def __init__(self, operation: str, resource: str, code: str, message: str) -> None:
        self.operation = operation
        self.resource = resource
        self.code = code
        super().__init__(f"{operation} on {resource} failed: {code}: {message}")


class WaitTimeout(PhasegateError):
    """A wait reached its deadline before the awaited state; a deadline is never a hang."""


class PhaseFailed(PhasegateError):
    """A phase stopped on a failed step; says whether its finished steps were rolled back."""


class AwsRetriesExhausted(PhasegateError):
    """An AWS call kept failing transiently (throttling, 5xx, connection) until retries ran out.

    Not an AwsCallError: another try later (a Prefect task retry, a re-run) may well succeed.
    """

    def __init__(self, operation: str, resource: str, attempts: int, reason: str) -> None:
        self.operation = operation
        self.resource = resource
        self.attempts = attempts
        self.reason = reason
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        # Exception's, not super()'s: a subclass also derives from botocore's ClientError.
        Exception.__init__(self, f"{operation} on {resource} failed after {tries}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.operation, self.resource, self.attempts, self.reason)


class AwsUnreachable(PhasegateError):
    """An environment's AWS endpoint cannot be reached at all; the message says what to do."""


class AwsCredentialsError(PhasegateError):
    """No usable credentials for an environment (none found, expired, or the role refused)."""
