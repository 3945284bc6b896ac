"""Which Prefect API a command talks to: the user's (PREFECT_API_URL), else the local server.

Every command runs inside `prefect_api(start)`: with PREFECT_API_URL set nothing changes; else
the local server (phasegate/local_server.py) is used when it runs, and started first when the
command needs Prefect (`start`). The URL goes into Prefect's settings for this process and
into the environment for the processes it starts.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.settings import PREFECT_API_URL, temporary_settings

from phasegate.errors import ConfigError
from phasegate.local_server import running_api_url, start_server


@contextmanager
def prefect_api(start: bool) -> Iterator[str | None]:
    """The API URL in force meanwhile (None: a command that needs no Prefect, none running)."""
    if url := PREFECT_API_URL.value():
        yield url
        return
    url = running_api_url() or (start_server().api_url if start else None)
    if url is None:
        yield None
        return
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


def require_api(what: str) -> str:
    """The API URL in force; a ConfigError naming `what` when there is none."""
    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError(
            f"{what} needs a Prefect server that outlives the command: `phasegate server up`, "
            "or set PREFECT_API_URL to yours, e.g. http://127.0.0.1:4200/api"
        )
    return url
