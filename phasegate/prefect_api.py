"""Which Prefect API a command talks to, and the refusal when a command needs a lasting one.

`fleet run` and `deploy` hand work to workers, which only a server that outlives the command
can do: a temporary per-command API would vanish with its runs.
"""

from prefect.settings import PREFECT_API_URL

from phasegate.errors import ConfigError


def require_api(what: str) -> str:
    """The API URL in force; a ConfigError naming `what` when there is none."""
    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError(
            f"{what} needs a Prefect server that outlives the command: start one "
            "(prefect server start) and set PREFECT_API_URL, e.g. http://127.0.0.1:4200/api"
        )
    return url
