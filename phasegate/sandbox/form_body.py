"""Rewriting a query-protocol request's form body before moto reads it (for gap-fillers)."""

import io
from typing import Any
from urllib.parse import urlencode


def replace_form(environ: dict[str, Any], params: dict[str, list[str]]) -> None:
    """Make `params` the request's form body."""
    body = urlencode([(k, v) for k, values in params.items() for v in values]).encode()
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
