"""Sandbox front: every RDS instance has its own DbiResourceId.

AWS gives each DB instance a unique, immutable resource id (`db-` and 26 characters), and
Terraform's aws_db_instance uses it as the resource's id, finding the instance again with the
`dbi-resource-id` filter. moto (5.x) gives every instance the same one, so with two
instances in an account the provider's lookup matched both and an update's wait ended in
"couldn't find resource". `RdsResourceIds` wraps moto's app: after a call that creates an
instance it gives that instance an id of its own and writes it into moto's answer; every
later answer reads it from moto's instance.
"""

import base64
import io
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from phasegate.sandbox.latency import account_and_region

StartResponse = Callable[..., Any]

CREATES = {
    "CreateDBInstance",
    "CreateDBInstanceReadReplica",
    "RestoreDBInstanceFromDBSnapshot",
    "RestoreDBInstanceToPointInTime",
}
_ID = re.compile(rb"<DbiResourceId>[^<]*</DbiResourceId>")


def new_resource_id() -> str:
    """`db-` and 26 base32 characters, as AWS writes them."""
    return "db-" + base64.b32encode(uuid.uuid4().bytes).decode()[:26]


class RdsResourceIds:
    """WSGI middleware: a created DB instance gets a DbiResourceId of its own."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET") or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        params = parse_qs(body.decode(errors="replace"))
        if params.get("Action", [""])[0] not in CREATES:
            return self.app(environ, start_response)
        answered: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            answered.update(status=status, headers=headers)
            return lambda data: None

        answer = b"".join(self.app(environ, keep))
        identifier = params.get("DBInstanceIdentifier", [""])[0]
        if answered["status"].startswith("200") and identifier:
            from moto.rds.models import rds_backends

            account, region = account_and_region(environ)
            instance = rds_backends[account][region].databases.get(identifier)
            if instance is not None:
                instance.dbi_resource_id = new_resource_id()
                tag = f"<DbiResourceId>{instance.dbi_resource_id}</DbiResourceId>".encode()
                answer = _ID.sub(tag, answer)
        headers = [(k, v) for k, v in answered["headers"] if k.lower() != "content-length"]
        start_response(answered["status"], [*headers, ("Content-Length", str(len(answer)))])
        return [answer]
