"""Structured logging: structlog on top of the stdlib logger named "phasegate".

Going through the stdlib is what lets the same events reach Prefect's run logs: Prefect
attaches its API handler to the loggers named in PREFECT_LOGGING_EXTRA_LOGGERS, and
phasegate/__init__.py names "phasegate" there before Prefect is imported. Context
(environment, phase, step, resource) is bound with `bind()` or `structlog.contextvars`, so
every line says what it is about.
"""

import logging
import os
import sys
from typing import Any

import structlog

LOGGER_NAME = "phasegate"
_configured = False


class _ConsoleHandler(logging.StreamHandler):
    """Ours, told apart from the API handler Prefect attaches to the same logger.

    It writes to whatever sys.stderr is at the time of each event, so a captured or
    replaced stderr (a test runner's) that is later closed does not swallow later lines.
    """

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _renderer(json: bool) -> Any:
    if json:
        return structlog.processors.JSONRenderer(sort_keys=True)
    return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())


def configure(level: str | None = None, json: bool | None = None) -> None:
    """Set up structlog once per process: pretty on a terminal, JSON lines otherwise."""
    global _configured
    if _configured:
        return
    use_json = (not sys.stderr.isatty()) if json is None else json
    level_name = (level or os.environ.get("PHASEGATE_LOG_LEVEL", "INFO")).upper()

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _renderer(use_json),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger(LOGGER_NAME)
    root.setLevel(level_name)
    root.propagate = False  # our handler prints it; the root logger must not print it twice
    if not any(isinstance(h, _ConsoleHandler) for h in root.handlers):
        handler = _ConsoleHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    _configured = True


def get_logger(name: str = LOGGER_NAME, **context: Any) -> structlog.stdlib.BoundLogger:
    """A logger under "phasegate" with `context` (environment, phase, step, resource) bound."""
    configure()
    if not name.startswith(LOGGER_NAME):
        name = f"{LOGGER_NAME}.{name}"
    return structlog.get_logger(name).bind(**context)
