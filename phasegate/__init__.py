"""phasegate: gated, resumable AWS cost-migration flows on Prefect."""

import os

__version__ = "0.1.0"


def _prefect_defaults() -> None:
    """Settings Prefect reads once, at import, so they are set before anything imports it.

    A user who points Prefect at a server (PREFECT_API_URL) or a home keeps them; everyone
    else gets an embedded Prefect whose home lives under PHASEGATE_HOME, not in ~/.prefect.
    Our structlog logger is named so its events reach the Prefect run logs.
    """
    home = os.environ.get("PHASEGATE_HOME") or os.path.join(os.path.expanduser("~"), ".phasegate")
    if "PREFECT_API_URL" not in os.environ and "PREFECT_HOME" not in os.environ:
        os.environ["PREFECT_HOME"] = os.path.join(home, "prefect")
        # Prefect warns on stderr when it cannot create it; a first run must not.
        os.makedirs(os.environ["PREFECT_HOME"], exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Our events outside a run (inventory, cost, the sandbox) are normal, not a mistake.
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    extra = {n for n in os.environ.get("PREFECT_LOGGING_EXTRA_LOGGERS", "").split(",") if n}
    os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = ",".join(sorted(extra | {"phasegate"}))


_prefect_defaults()
