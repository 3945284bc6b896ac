"""A retried attempt of a request the sandbox already answered gets that same answer again.

SDKs give every attempt of one operation the same `amz-sdk-invocation-id` header and number
the attempts in `amz-sdk-request: attempt=N; max=M`. On a loaded machine Terraform's AWS
provider now and then closes its connection to the local server just as the answer arrives
(captured: the answer's headers received, the socket closed 0.2 ms later, the body refused
with a reset) and sends the operation again. moto then runs it a second time and answers
`InvalidGroup.Duplicate` or `InvalidPermission.Duplicate` for what the first attempt made,
so the apply fails on a call that succeeded. AWS's answers do not get lost like that between
two processes on one host, so the sandbox makes a retry see what the lost answer said.

Only answers the sandbox gave are remembered (the last `KEPT` invocations): an attempt that
an injected fault or hold failed was never answered, so its retry runs as usual, and
phasegate's own faults keep exercising clients' retries.
"""

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

KEPT = 1024

_ATTEMPT = re.compile(r"attempt=(\d+)")

StartResponse = Callable[..., Any]
Answer = Callable[[StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class _Answered:
    status: str
    headers: list[tuple[str, str]]
    body: bytes


def _invocation(environ: dict[str, Any]) -> tuple[str, int]:
    """The request's invocation id ('' when its client sends none) and attempt number."""
    attempt = _ATTEMPT.search(environ.get("HTTP_AMZ_SDK_REQUEST", ""))
    return environ.get("HTTP_AMZ_SDK_INVOCATION_ID", ""), int(attempt.group(1)) if attempt else 1


class RetriedAttempts:
    """The answers given, by invocation id, for the attempts that come after them."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._answers: OrderedDict[str, _Answered] = OrderedDict()
        self._lock = threading.Lock()

    def replay(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes] | None:
        """The earlier answer when this request retries an answered invocation, else None."""
        invocation, attempt = _invocation(environ)
        if not invocation or attempt < 2:
            return None
        with self._lock:
            answered = self._answers.get(invocation)
        if answered is None:
            return None
        start_response(answered.status, answered.headers)
        return [answered.body]

    def answer(
        self, environ: dict[str, Any], start_response: StartResponse, answer: Answer
    ) -> Iterable[bytes]:
        """Run `answer` and remember what it said under the request's invocation id."""
        invocation, _ = _invocation(environ)
        if not invocation:
            return answer(start_response)
        said: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            said.update(status=status, headers=list(headers))
            return start_response(status, headers, *exc_info)

        body = b"".join(answer(keep))
        with self._lock:
            self._answers[invocation] = _Answered(said["status"], said["headers"], body)
            self._answers.move_to_end(invocation)
            while len(self._answers) > self._kept:
                self._answers.popitem(last=False)
        return [body]
