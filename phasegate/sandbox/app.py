"""The sandbox's HTTP front: moto's server app, plus the gaps it leaves, plus a call log.

Product code talks to this exactly as to AWS and never asks whether it is the sandbox, so
what moto lacks and a migration needs is answered here, in AWS's own wire format:

- RDS DescribeOrderableDBInstanceOptions: moto returns nothing for any engine, which would
  make every resize look impossible; answered from `ORDERABLE_CLASSES`.
- ElastiCache ListAllowedNodeTypeModifications: moto does not implement it (HTTP 500);
  answered from `CACHE_NODE_MEMORY_GIB` and the group's current node type in moto.
- The gap-fillers of phasegate.sandbox.gaps, each in its own module (what Terraform's AWS
  provider needs, for one).
- The second region's gaps (a cross-region read replica in its own subnet group and its
  deletion, ElastiCache subnet group deletion): phasegate.sandbox.region_gaps.
- DescribeTargetHealth: a target whose security groups do not admit the ALB is unhealthy,
  as AWS's failed health check says it (phasegate.sandbox.target_reachability).

A retried attempt (the same `amz-sdk-invocation-id`, attempt 2 or later) of a request the
sandbox already answered gets that answer again instead of running twice
(phasegate.sandbox.retried_attempts).

The call log records each request's service and action at the server, which is how tests
prove that a re-run or a `plan` makes no mutating call. Read it with
GET /_phasegate/calls; clear it with DELETE /_phasegate/calls.

API faults make the server answer like a throttled or forbidden AWS, in each protocol's
own error format, so retries and fail-fast are exercised over the wire: POST
/_phasegate/faults {"action": "DeleteNatGateway" or "*" (every mutating action),
"code": "Throttling", "status": 400, "times": 3} fails each matching action `times` times
before letting it through (-1: always); DELETE /_phasegate/faults clears them.

Hold faults stop a client at a precise point inside a migration step (to SIGKILL it there,
never by a sleep): {"action": "DeleteNatGateway", "hold": 30, "times": 1} records the
matching request in the call log as soon as it arrives, holds it for `hold` seconds or until
DELETE /_phasegate/faults, whichever comes first, then answers 503 ServiceUnavailable (unless
"code" and "status" say otherwise) without passing it to moto: the action never happens.
A held request blocks nothing else. SDKs retry a 503: a client that survives the hold sends
the action again, and `times` decides whether that retry is held too.

The latency model (phasegate.sandbox.latency) makes changes take time like AWS's, scaled by
a factor (0, the default: instant): GET/POST/DELETE /_phasegate/latency, and transitions
that are not the product's doing through /_phasegate/transitions.
"""

import io
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from phasegate.sandbox import gaps
from phasegate.sandbox.latency import Latency, SpecError, account_and_region, check_factor
from phasegate.sandbox.phase2_gaps import Phase2Gaps
from phasegate.sandbox.rds_resource_ids import RdsResourceIds
from phasegate.sandbox.region_gaps import RegionGaps
from phasegate.sandbox.retried_attempts import RetriedAttempts
from phasegate.sandbox.target_reachability import TargetReachability

ORDERABLE_ENGINES = {"postgres": ["13.15", "14.12", "15.7", "15.8", "16.3", "16.4", "17.2"]}
ORDERABLE_CLASSES = [
    f"db.{family}.{size}"
    for family in ("t3", "t4g")
    for size in ("micro", "small", "medium", "large", "xlarge", "2xlarge")
] + [
    f"db.{family}.{size}" for family in ("m5", "m6g", "m7g", "r6g") for size in ("large", "xlarge")
]

# Node types the sandbox offers, with their memory (GiB) as AWS lists it. Like AWS, a type with
# at least the current memory is a scale-up, one with less a scale-down; others are not offered.
CACHE_NODE_MEMORY_GIB = {
    "cache.t3.micro": 0.5, "cache.t4g.micro": 0.5, "cache.t3.small": 1.37,
    "cache.t4g.small": 1.37, "cache.t3.medium": 3.09, "cache.t4g.medium": 3.09,
    "cache.m5.large": 6.38, "cache.m6g.large": 6.38, "cache.m7g.large": 6.38,
    "cache.r6g.large": 13.07, "cache.r7g.large": 13.07,
}  # fmt: skip

# REST services (CloudFront, Route 53) are logged as "METHOD PATH": a GET or HEAD reads.
READ_ONLY_PREFIXES = (
    "Describe",
    "List",
    "Get",
    "BatchGet",
    "Search",
    "Lookup",
    "Head",
    "GET ",
    "HEAD ",
)

_SERVICE_IN_AUTH = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")

StartResponse = Callable[..., Any]


def is_mutating(action: str) -> bool:
    """True for an AWS action that may change something (by AWS's naming convention)."""
    return not action.startswith(READ_ONLY_PREFIXES)


def _orderable_response(params: dict[str, list[str]]) -> bytes:
    engine = params.get("Engine", [""])[0]
    version = params.get("EngineVersion", [None])[0]
    wanted_class = params.get("DBInstanceClass", [None])[0]
    options = [
        (v, c)
        for v in ORDERABLE_ENGINES.get(engine, [])
        if version in (None, v)
        for c in ORDERABLE_CLASSES
        if wanted_class in (None, c)
    ]
    members = "".join(
        "<OrderableDBInstanceOption>"
        f"<Engine>{engine}</Engine><EngineVersion>{v}</EngineVersion>"
        f"<DBInstanceClass>{c}</DBInstanceClass><LicenseModel>postgresql-license</LicenseModel>"
        "<MultiAZCapable>true</MultiAZCapable><SupportsStorageEncryption>true"
        "</SupportsStorageEncryption><StorageType>gp3</StorageType>"
        "</OrderableDBInstanceOption>"
        for v, c in options
    )
    return (
        '<DescribeOrderableDBInstanceOptionsResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">'
        "<DescribeOrderableDBInstanceOptionsResult><OrderableDBInstanceOptions>"
        f"{members}</OrderableDBInstanceOptions></DescribeOrderableDBInstanceOptionsResult>"
        "<ResponseMetadata><RequestId>phasegate-sandbox</RequestId></ResponseMetadata>"
        "</DescribeOrderableDBInstanceOptionsResponse>"
    ).encode()


def _allowed_node_types_response(
    environ: dict[str, Any], params: dict[str, list[str]]
) -> tuple[str, bytes]:
    """Status and body of ListAllowedNodeTypeModifications for a group or cluster in moto."""
    from moto.elasticache.models import elasticache_backends

    account, region = account_and_region(environ)
    backend = elasticache_backends[account][region]
    group_id = params.get("ReplicationGroupId", [""])[0]
    cluster_id = params.get("CacheClusterId", [""])[0]
    resource = (
        backend.replication_groups.get(group_id)
        if group_id
        else backend.cache_clusters.get(cluster_id)
    )
    xmlns = "http://elasticache.amazonaws.com/doc/2015-02-02/"
    if resource is None:
        code, what = (
            ("ReplicationGroupNotFoundFault", f"Replication group {group_id}")
            if group_id
            else ("CacheClusterNotFound", f"Cache cluster {cluster_id}")
        )
        return "404 Not Found", (
            f'<ErrorResponse xmlns="{xmlns}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{what} not found.</Message></Error>"
            "<RequestId>phasegate-sandbox</RequestId></ErrorResponse>"
        ).encode()
    current = resource.cache_node_type
    memory = CACHE_NODE_MEMORY_GIB.get(current)
    others = [t for t in CACHE_NODE_MEMORY_GIB if t != current] if memory is not None else []
    up = "".join(f"<member>{t}</member>" for t in others if CACHE_NODE_MEMORY_GIB[t] >= memory)
    down = "".join(f"<member>{t}</member>" for t in others if CACHE_NODE_MEMORY_GIB[t] < memory)
    return "200 OK", (
        f'<ListAllowedNodeTypeModificationsResponse xmlns="{xmlns}">'
        "<ListAllowedNodeTypeModificationsResult>"
        f"<ScaleUpModifications>{up}</ScaleUpModifications>"
        f"<ScaleDownModifications>{down}</ScaleDownModifications>"
        "</ListAllowedNodeTypeModificationsResult>"
        "<ResponseMetadata><RequestId>phasegate-sandbox</RequestId></ResponseMetadata>"
        "</ListAllowedNodeTypeModificationsResponse>"
    ).encode()


@dataclass
class ApiFault:
    """Answer matching calls with an AWS error, `times` times per action (-1: always)."""

    action: str
    code: str = ""  # "" with a hold: ServiceUnavailable
    status: int = 0  # 0: 503 with a hold, else 400
    times: int = -1
    message: str = "injected by the phasegate sandbox"
    hold: float = 0  # seconds to hold the request before failing it (0: fail at once)
    failed: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.hold, int | float) or self.hold < 0:
            raise SpecError("'hold' must be a number of seconds >= 0")
        if not self.code:
            if not self.hold:
                raise SpecError("a fault needs a 'code' (or a 'hold')")
            self.code = "ServiceUnavailable"
        if not self.status:
            self.status = 503 if self.hold else 400

    def strikes(self, action: str) -> bool:
        """True when this call of `action` must fail; counts it."""
        if not (self.action == action or (self.action == "*" and is_mutating(action))):
            return False
        count = self.failed.get(action, 0)
        if 0 <= self.times <= count:
            return False
        self.failed[action] = count + 1
        return True

    def response(self, service: str, json_protocol: bool) -> tuple[str, str, bytes]:
        """Status line, content type and body, in the error format the service's SDK parses."""
        status = f"{self.status} {HTTPStatus(self.status).phrase}"
        if json_protocol:
            body = json.dumps({"__type": self.code, "message": self.message})
            return status, "application/x-amz-json-1.1", body.encode()
        if service == "ec2":
            body = (
                f"<Response><Errors><Error><Code>{self.code}</Code><Message>{self.message}"
                "</Message></Error></Errors><RequestID>phasegate-fault</RequestID></Response>"
            )
        else:
            body = (
                f"<ErrorResponse><Error><Type>Sender</Type><Code>{self.code}</Code>"
                f"<Message>{self.message}</Message></Error>"
                "<RequestId>phasegate-fault</RequestId></ErrorResponse>"
            )
        return status, "text/xml", body.encode()


class SandboxApp:
    """WSGI middleware around moto's dispatcher: fills gaps, logs calls, injects API faults,
    and makes changes take time (phasegate.sandbox.latency)."""

    def __init__(self, latency: float = 0.0) -> None:
        self.moto = TargetReachability(
            Phase2Gaps(RegionGaps(RdsResourceIds(DomainDispatcherApplication(create_backend_app))))
        )
        self.calls: list[dict[str, str]] = []
        self.faults: list[ApiFault] = []
        self.latency = Latency(latency)
        self._lock = threading.Lock()
        self._faults_cleared = threading.Event()  # set (and replaced) by DELETE faults
        self.attempts = RetriedAttempts()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/_phasegate/calls":
            return self._calls_endpoint(environ, start_response)
        if path == "/_phasegate/faults":
            return self._faults_endpoint(environ, start_response)
        if path == "/_phasegate/latency":
            return self._latency_endpoint(environ, start_response)
        if path == "/_phasegate/transitions":
            return self._transitions_endpoint(environ, start_response)
        if path == "/moto-api/reset":
            with self.latency.lock:
                self.latency.forget()  # the resources they were about are gone
                return self.moto(environ, start_response)
        service, action, params = self._identify(environ)
        if action:
            with self._lock:
                self.calls.append({"service": service, "action": action})
            replayed = self.attempts.replay(environ, start_response)
            if replayed is not None:
                return replayed
            with self._lock:
                fault = next((f for f in self.faults if f.strikes(action)), None)
                cleared = self._faults_cleared
            if fault is not None:
                if fault.hold:
                    cleared.wait(fault.hold)  # never under a lock: other requests go on
                status, content_type, body = fault.response(
                    service, bool(environ.get("HTTP_X_AMZ_TARGET"))
                )
                start_response(status, [("Content-Type", content_type)])
                return [body]
        return self.attempts.answer(
            environ,
            start_response,
            lambda respond: self._answer(environ, respond, service, action, params),
        )

    def _answer(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        service: str,
        action: str,
        params: dict[str, list[str]],
    ) -> Iterable[bytes]:
        """The sandbox's answer: a gap filled here, else moto's (with the latency model)."""
        filled = gaps.answer(service, action, params, environ)
        if filled is not None:
            status, content_type, body = filled
            start_response(status, [("Content-Type", content_type)])
            return [body]
        if service == "rds" and action == "DescribeOrderableDBInstanceOptions":
            body = _orderable_response(params)
            start_response(
                "200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))]
            )
            return [body]
        if service == "elasticache" and action == "ListAllowedNodeTypeModifications":
            status, body = _allowed_node_types_response(environ, params)
            start_response(
                status, [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))]
            )
            return [body]
        with self.latency.lock:
            self.latency.settle()
            return [
                b"".join(
                    self.latency.dispatch(
                        service, action, params, environ, start_response, self.moto
                    )
                )
            ]

    def _identify(self, environ: dict[str, Any]) -> tuple[str, str, dict[str, list[str]]]:
        """Service and action of a request, for both the query and the JSON protocols."""
        match = _SERVICE_IN_AUTH.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = match.group(1) if match else ""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            return service, target.rsplit(".", 1)[-1], {}
        params: dict[str, list[str]] = {}
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            params = parse_qs(body.decode(errors="replace"))
        params = params or parse_qs(environ.get("QUERY_STRING", ""))
        action = params.get("Action", [""])[0]
        if not action and service:
            # REST services (ECR via JSON, Route 53, CloudFront, Budgets): method and path.
            action = f"{environ.get('REQUEST_METHOD', '')} {environ.get('PATH_INFO', '')}"
        return service, action, params

    @staticmethod
    def _json_body(environ: dict[str, Any]) -> dict[str, Any]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            spec = json.loads(environ["wsgi.input"].read(length) or b"{}")
        except ValueError as exc:
            raise SpecError(f"the body is not JSON: {exc}") from None
        if not isinstance(spec, dict):
            raise SpecError("the body must be a JSON object")
        return spec

    @staticmethod
    def _json_answer(start_response: StartResponse, data: Any, status: str = "200 OK") -> list:
        body = json.dumps(data).encode()
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    def _spec_error(self, start_response: StartResponse, exc: SpecError) -> list[bytes]:
        status = "404 Not Found" if exc.missing else "400 Bad Request"
        return self._json_answer(start_response, {"error": str(exc)}, status)

    def _calls_endpoint(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> list[bytes]:
        with self._lock:
            if environ.get("REQUEST_METHOD") == "DELETE":
                self.calls.clear()
            calls = list(self.calls)
        return self._json_answer(start_response, calls)

    def _faults_endpoint(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> list[bytes]:
        method = environ.get("REQUEST_METHOD")
        known = {f.name for f in fields(ApiFault)} - {"failed"}
        try:
            with self._lock:
                if method == "DELETE":
                    self.faults.clear()
                    self._faults_cleared.set()  # releases the held requests
                    self._faults_cleared = threading.Event()
                elif method == "POST":
                    spec = self._json_body(environ)
                    unknown = set(spec) - known
                    if unknown or "action" not in spec:
                        raise SpecError(
                            f"a fault takes 'action' and any of {', '.join(sorted(known))}"
                        )
                    self.faults.append(ApiFault(**spec))
                faults = [dict(vars(f)) for f in self.faults]
        except SpecError as exc:
            return self._spec_error(start_response, exc)
        return self._json_answer(start_response, faults)

    def _latency_endpoint(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> list[bytes]:
        from phasegate.sandbox.latency import BASE_SECONDS

        method = environ.get("REQUEST_METHOD")
        lat = self.latency
        try:
            with lat.lock:
                if method == "DELETE":
                    lat.factor = 0.0
                    lat.complete_all()
                elif method == "POST":
                    spec = self._json_body(environ)
                    if set(spec) != {"factor"}:
                        raise SpecError('the body must be {"factor": F}')
                    lat.settle()
                    lat.factor = check_factor(spec["factor"])
                factor = lat.factor
        except SpecError as exc:
            return self._spec_error(start_response, exc)
        return self._json_answer(start_response, {"factor": factor, "base_seconds": BASE_SECONDS})

    def _transitions_endpoint(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> list[bytes]:
        method = environ.get("REQUEST_METHOD")
        try:
            if method == "POST":
                return self._json_answer(
                    start_response, self.latency.inject(self._json_body(environ))
                )
            if method == "DELETE":
                self.latency.complete_all()
        except SpecError as exc:
            return self._spec_error(start_response, exc)
        return self._json_answer(start_response, self.latency.listing())


class SandboxServer:
    """moto plus the sandbox front, served on 127.0.0.1 from a background thread.

    `latency` is the latency model's factor (phasegate.sandbox.latency): 0 makes every
    change instant, 1 takes AWS's own time, 0.01 a hundredth of it.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", latency: float = 0.0) -> None:
        self.app = SandboxApp(latency=latency)
        self._server: BaseWSGIServer = make_server(host, port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://{host}:{self._server.server_port}"

    def start(self) -> "SandboxServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
