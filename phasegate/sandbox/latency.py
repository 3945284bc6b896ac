"""A sandbox that takes time like AWS: the latency model of the sandbox front.

moto applies every change at once. AWS does not: an RDS instance is "modifying" for minutes,
a NAT gateway is "deleting" for one, an ECS deployment drains its old tasks while the new
ones start. This module makes the sandbox answer like AWS in the meantime, so product code
must wait as it would on AWS. It lives entirely in the front (phasegate.sandbox.app): product
code never learns it talks to a sandbox.

Durations are realistic AWS times, multiplied by the server's latency factor:

    =========================  ==================================  =============  =========
    what                       AWS shows meanwhile                 key            base (s)
    =========================  ==================================  =============  =========
    RDS ModifyDBInstance       instance "modifying", old class,    rds.modify       300
      (DBInstanceClass)        PendingModifiedValues.DBInstanceClass
    RDS CreateDBSnapshot       snapshot "creating",                rds.snapshot     120
                               instance "backing-up"
    ElastiCache                group "modifying", old              cache.modify     600
      ModifyReplicationGroup   CacheNodeType
      (CacheNodeType)
    ElastiCache CreateSnapshot snapshot "creating",                cache.snapshot   120
      (ReplicationGroupId)     group "snapshotting"
    ECS new deployment         PRIMARY (new, running 0 -> desired), ecs.deploy      120
      (CreateService, or       ACTIVE (old, draining), rolloutState
      UpdateService changing   IN_PROGRESS, service running < desired
      taskDefinition, network-
      Configuration or with
      forceNewDeployment)
    ECS desiredCount change    running moves to the new desired    ecs.scale         60
    EC2 CreateNatGateway       "pending", then "available"         nat.create        90
    EC2 DeleteNatGateway       "deleting", then "deleted"          nat.delete        60
    =========================  ==================================  =============  =========

Scaled time = base * factor. Factor 0 (the default) is today's behaviour: every change is
instant, and ECS services run their desired tasks at once. The factor is set by
`SandboxServer(port, latency=F)`, `phasegate sandbox up --latency F`, or at runtime:

    GET    /_phasegate/latency            {"factor": F, "base_seconds": {key: seconds}}
    POST   /_phasegate/latency {"factor": F}   the new factor (applies to later changes)
    DELETE /_phasegate/latency            factor 0, every pending transition completed now

Transitions are evaluated lazily, on each AWS request, against time.monotonic(); no thread.
While a resource is in transition, AWS refuses what it would refuse: CreateDBSnapshot and
ModifyDBInstance (InvalidDBInstanceState), CreateSnapshot and ModifyReplicationGroup
(InvalidReplicationGroupState) answer 400 until the resource is available again.

Transitions that are not phasegate's doing (a nightly backup, someone else's deployment)
are injected for tests; their `seconds` are real seconds, never scaled by the factor:

    POST /_phasegate/transitions {"service": "rds", "id": "demo-db",
                                  "status": "backing-up", "seconds": 30}
    POST /_phasegate/transitions {"service": "elasticache", "id": "demo-redis",
                                  "status": "snapshotting", "seconds": 30}
    POST /_phasegate/transitions {"service": "ecs", "id": "demo-cluster/demo-api",
                                  "seconds": 30}    (a new deployment of the same revision)
    optional in each: "region" (default us-east-1), "account" (default moto's account)
    GET    /_phasegate/transitions   the pending ones: [{"service", "id", "region",
                                     "status", "cause", "seconds", "remaining"}]
    DELETE /_phasegate/transitions   complete every pending transition now

A moto reset (POST /moto-api/reset) forgets pending transitions with the resources they
were about.

Known limits: ApplyImmediately=False is applied like ApplyImmediately=True (AWS would wait
for the maintenance window); ECS cluster task counters (DescribeClusters) are moto's own.
"""

import io
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.utils import utcnow
from moto.moto_api._internal import mock_random

BASE_SECONDS: dict[str, float] = {
    "rds.modify": 300.0,
    "rds.snapshot": 120.0,
    "cache.modify": 600.0,
    "cache.snapshot": 120.0,
    "ecs.deploy": 120.0,
    "ecs.scale": 60.0,
    "nat.create": 90.0,
    "nat.delete": 60.0,
}

DEFAULT_REGION = "us-east-1"
ECS_TARGET = "AmazonEC2ContainerServiceV20141113"

_KEY_AND_REGION_IN_AUTH = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/")

StartResponse = Callable[..., Any]
MotoApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SpecError(ValueError):
    """A bad request to a /_phasegate endpoint: answered 400 (404 when `missing`)."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def account_and_region(environ: dict[str, Any]) -> tuple[str, str]:
    """The moto account and region a signed request is for."""
    from moto.iam.models import get_account_id_from

    match = _KEY_AND_REGION_IN_AUTH.search(environ.get("HTTP_AUTHORIZATION", ""))
    key, region = match.groups() if match else ("", DEFAULT_REGION)
    return os.environ.get("MOTO_ACCOUNT_ID") or get_account_id_from(key), region


def _backend(service: str, account: str, region: str) -> Any:
    if service == "rds":
        from moto.rds.models import rds_backends as backends
    elif service == "elasticache":
        from moto.elasticache.models import elasticache_backends as backends
    elif service == "ecs":
        from moto.ecs.models import ecs_backends as backends
    else:
        from moto.ec2.models import ec2_backends as backends
    return backends[account][region]


# -- transitions ----------------------------------------------------------------------------


@dataclass(eq=False)
class Transition:
    """One resource on its way from one state to another, over `seconds` from `started`."""

    service: str
    resource: str
    region: str
    status: str
    cause: str  # the action that started it, or "injected"
    seconds: float
    started: float = field(default_factory=time.monotonic)

    def remaining(self, now: float) -> float:
        return max(0.0, self.started + self.seconds - now)

    def fraction(self, now: float) -> float:
        return 1.0 if self.seconds <= 0 else min(1.0, (now - self.started) / self.seconds)

    def progress(self, now: float) -> None:
        """Show the state at `now` (before the end)."""

    def finish(self) -> None:
        """Apply the end state."""

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "service": self.service,
            "id": self.resource,
            "region": self.region,
            "status": self.status,
            "cause": self.cause,
            "seconds": round(self.seconds, 3),
            "remaining": round(self.remaining(now), 3),
        }


@dataclass(eq=False)
class StatusTransition(Transition):
    """A moto object whose status attribute reads `status` until the end, then `final`.

    Several transitions may overlap on one object (a backup during a resize): it shows the
    status of the latest one still running, and when none is left, the latest one's `final`.
    """

    obj: Any = None
    attr: str = "status"
    final: str = "available"
    on_finish: Callable[[], None] | None = None

    def finish(self) -> None:
        if self.on_finish is not None:
            self.on_finish()


@dataclass(eq=False)
class EcsTransition(Transition):
    """An ECS service rolling out a new deployment, or scaling its primary one.

    A new deployment replaces tasks one at a time: its running count rises from 0 to the
    desired count over the time, while the old deployments drain, one task ahead, so the
    service runs fewer tasks than desired until the end. A scale moves the primary
    deployment's running count from where it was to the desired count.
    """

    svc: Any = None
    primary: dict[str, Any] = field(default_factory=dict)
    old: list[dict[str, Any]] = field(default_factory=list)
    start_running: int = 0
    old_running: int = 0

    def progress(self, now: float) -> None:
        desired = self.svc.desired_count
        f = self.fraction(now)
        if self.old or self.primary.get("rolloutState") == "IN_PROGRESS":
            running = min(math.floor(desired * f), max(desired - 1, 0))
            left = max(0, min(self.old_running, desired - running - 1))
            for deployment in self.old:
                deployment["status"] = "ACTIVE"
                deployment["runningCount"] = deployment["desiredCount"] = min(
                    left, deployment.get("runningCount", 0)
                )
                deployment["pendingCount"] = 0
                left -= deployment["runningCount"]
            old_total = sum(d["runningCount"] for d in self.old)
        else:
            moved = self.start_running + (desired - self.start_running) * f
            running = math.floor(moved) if desired >= self.start_running else math.ceil(moved)
            old_total = 0
        self.primary.update(
            desiredCount=desired,
            runningCount=running,
            pendingCount=max(0, desired - running),
            updatedAt=utcnow(),
        )
        self.svc.deployments = [self.primary, *self.old]
        self.svc.running_count = running + old_total
        self.svc.pending_count = max(0, desired - running)

    def finish(self) -> None:
        settle_service(self.svc, self.primary)


def _new_deployment(svc: Any) -> dict[str, Any]:
    deployment_id = f"ecs-svc/{mock_random.randint(0, 32**12)}"
    previous = svc.deployments[0] if svc.deployments else {}
    now = utcnow()
    return {
        **previous,
        "id": deployment_id,
        "status": "PRIMARY",
        "taskDefinition": svc.task_definition,
        "networkConfiguration": svc.network_configuration or None,
        "desiredCount": svc.desired_count,
        "runningCount": 0,
        "pendingCount": svc.desired_count,
        "failedTasks": 0,
        "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": f"ECS deployment {deployment_id} in progress.",
        "createdAt": now,
        "updatedAt": now,
    }


def settle_service(svc: Any, primary: dict[str, Any] | None = None) -> None:
    """The service's steady state: one PRIMARY deployment, running == desired."""
    if primary is None:
        primary = svc.deployments[0] if svc.deployments else None
    desired = svc.desired_count
    if primary is not None:
        if primary.get("rolloutState") != "COMPLETED":
            primary["rolloutState"] = "COMPLETED"
            primary["rolloutStateReason"] = f"ECS deployment {primary['id']} completed."
        primary.update(
            status="PRIMARY",
            desiredCount=desired,
            runningCount=desired,
            pendingCount=0,
            updatedAt=utcnow(),
        )
        svc.deployments = [primary]
    svc.running_count = desired
    svc.pending_count = 0


# -- the model ------------------------------------------------------------------------------


def _param(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


class Latency:
    """The latency factor, the pending transitions, and the hooks around moto's answers.

    `lock` serialises every AWS request with the transitions' effects on moto's objects;
    the front holds it around `settle` and `dispatch`.
    """

    def __init__(self, factor: float = 0.0) -> None:
        self.factor = check_factor(factor)
        self.transitions: list[Transition] = []
        self.lock = threading.RLock()

    # -- bookkeeping

    def scaled(self, key: str) -> float:
        return BASE_SECONDS[key] * self.factor

    def settle(self, now: float | None = None) -> None:
        """Finish what is due and show the rest as it stands at `now`."""
        now = time.monotonic() if now is None else now
        with self.lock:
            due = [t for t in self.transitions if t.remaining(now) <= 0]
            self.transitions = [t for t in self.transitions if t not in due]
            for t in sorted(due, key=lambda t: t.started):
                t.finish()
            for t in self.transitions:
                t.progress(now)
            self._show_statuses(due)

    def _show_statuses(self, due: list[Transition]) -> None:
        objects: dict[int, tuple[Any, str, list[StatusTransition]]] = {}
        for t in [*due, *self.transitions]:
            if isinstance(t, StatusTransition):
                objects.setdefault(id(t.obj), (t.obj, t.attr, []))[2].append(t)
        for obj, attr, ts in objects.values():
            active = [t for t in ts if t in self.transitions]
            latest = max(active or ts, key=lambda t: t.started)
            setattr(obj, attr, latest.status if active else latest.final)

    def add(self, transition: Transition) -> None:
        with self.lock:
            if isinstance(transition, EcsTransition):
                self.transitions = [
                    t
                    for t in self.transitions
                    if not (isinstance(t, EcsTransition) and t.svc is transition.svc)
                ]
            self.transitions.append(transition)
            self.settle()

    def busy(self, obj: Any) -> bool:
        """True while a transition is running on moto object `obj`."""
        return any(
            isinstance(t, StatusTransition) and t.obj is obj and t.remaining(time.monotonic())
            for t in self.transitions
        )

    def ecs_busy(self, svc: Any) -> bool:
        return any(isinstance(t, EcsTransition) and t.svc is svc for t in self.transitions)

    def complete_all(self) -> None:
        with self.lock:
            self.settle(now=math.inf)

    def forget(self) -> None:
        """Drop the pending transitions without applying them (moto was reset)."""
        with self.lock:
            self.transitions.clear()

    def listing(self) -> list[dict[str, Any]]:
        with self.lock:
            self.settle()
            now = time.monotonic()
            return [t.describe(now) for t in self.transitions]

    # -- injected transitions

    def inject(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Start a transition that is not phasegate's doing; its description."""
        unknown = set(spec) - {"service", "id", "status", "seconds", "region", "account"}
        if unknown:
            raise SpecError(f"unknown field(s): {', '.join(sorted(unknown))}")
        service, resource = spec.get("service"), spec.get("id")
        if not isinstance(resource, str) or not resource:
            raise SpecError("'id' must name the resource")
        seconds = spec.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise SpecError("'seconds' must be a positive number (real seconds, not scaled)")
        region = spec.get("region") or DEFAULT_REGION
        account = spec.get("account") or os.environ.get("MOTO_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID
        with self.lock:
            self.settle()
            if service == "rds":
                obj = _backend("rds", account, region).databases.get(resource)
                if obj is None:
                    raise SpecError(f"no RDS instance {resource} in {region}", missing=True)
                t: Transition = StatusTransition(
                    "rds", resource, region, spec.get("status") or "backing-up", "injected",
                    float(seconds), obj=obj,
                )  # fmt: skip
            elif service == "elasticache":
                obj = _backend("elasticache", account, region).replication_groups.get(resource)
                if obj is None:
                    raise SpecError(f"no replication group {resource} in {region}", missing=True)
                t = StatusTransition(
                    "elasticache", resource, region, spec.get("status") or "snapshotting",
                    "injected", float(seconds), obj=obj,
                )  # fmt: skip
            elif service == "ecs":
                cluster, _, name = resource.partition("/")
                svc = _backend("ecs", account, region).services.get(f"{cluster}:{name}")
                if svc is None:
                    raise SpecError(f"no ECS service {resource} in {region}", missing=True)
                t = self._rollout(svc, resource, region, "injected", float(seconds))
            else:
                raise SpecError("'service' must be one of rds, elasticache, ecs")
            self.add(t)
            return t.describe(time.monotonic())

    def _rollout(
        self, svc: Any, resource: str, region: str, cause: str, seconds: float,
        old_running: int | None = None,
    ) -> EcsTransition:  # fmt: skip
        """A new deployment of the service as it is now; the old ones (running `old_running`
        tasks between them, the service's running count by default) drain."""
        old = [dict(d) for d in svc.deployments]
        running = svc.running_count if old_running is None else old_running
        if old:
            others = sum(d.get("runningCount", 0) for d in old[1:])
            old[0]["runningCount"] = max(0, running - others)
        return EcsTransition(
            "ecs", resource, region, "deployment in progress", cause, seconds, svc=svc,
            primary=_new_deployment(svc), old=old, old_running=running,
        )  # fmt: skip

    # -- around moto

    def dispatch(
        self,
        service: str,
        action: str,
        params: dict[str, list[str]],
        environ: dict[str, Any],
        start_response: StartResponse,
        moto: MotoApp,
    ) -> Iterable[bytes]:
        """Answer one AWS request through moto, with the latency model around it."""
        hook = _HOOKS.get((service, action))
        if hook is None:
            return moto(environ, start_response)
        body = environ["wsgi.input"].read()
        environ["wsgi.input"] = io.BytesIO(body)
        request = _Request(self, service, action, params, environ, body, moto)
        status, headers, answer = hook(request)
        start_response(status, headers)
        return [answer]


@dataclass
class _Request:
    """One hooked AWS request: its parameters, moto's backend, and calls into moto."""

    latency: Latency
    service: str
    action: str
    params: dict[str, list[str]]
    environ: dict[str, Any]
    body: bytes
    moto: MotoApp

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    def json(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.body or b"{}")
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}

    @property
    def region(self) -> str:
        return account_and_region(self.environ)[1]

    def backend(self) -> Any:
        account, region = account_and_region(self.environ)
        return _backend(self.service, account, region)

    def call(
        self, body: bytes | None = None, target: str | None = None
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        """moto's answer to this request (or to `body`, another request of the same caller)."""
        environ = dict(self.environ)
        if body is not None:
            environ.update(
                REQUEST_METHOD="POST",
                QUERY_STRING="",
                CONTENT_LENGTH=str(len(body)),
            )
            if target is None:
                environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded; charset=utf-8"
            else:
                environ["HTTP_X_AMZ_TARGET"] = f"{ECS_TARGET}.{target}"
        data = self.body if body is None else body
        environ["wsgi.input"] = io.BytesIO(data)
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
            captured["status"], captured["headers"] = status, list(headers)

        chunks = self.moto(environ, start_response)
        try:
            answer = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return captured["status"], _with_length(captured["headers"], answer), answer

    def query(self, action: str, **params: str) -> bytes:
        """moto's body for another query-protocol action of the same caller."""
        fields = {"Action": action, "Version": self.param("Version") or "", **params}
        return self.call(urlencode(fields).encode())[2]

    def refuse(self, code: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error>"
            "<RequestId>phasegate-sandbox</RequestId></ErrorResponse>"
        ).encode()
        return "400 Bad Request", [("Content-Type", "text/xml")], body


Answer = tuple[str, list[tuple[str, str]], bytes]


def _ok(status: str) -> bool:
    return status.startswith("2")


def _splice(answer: bytes, tag: str, fresh_source: bytes) -> bytes:
    """`answer` with its <tag> element replaced by the one in `fresh_source`."""
    pattern = re.compile(rb"<%s>.*?</%s>" % (tag.encode(), tag.encode()), re.DOTALL)
    fresh = pattern.search(fresh_source)
    if fresh is None:
        return answer
    return pattern.sub(lambda _: fresh.group(0), answer, count=1)


def _with_length(headers: list[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
    kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
    return [*kept, ("Content-Length", str(len(body)))]


# -- RDS


def _rds_modify(req: _Request) -> Answer:
    ident = req.param("DBInstanceIdentifier") or ""
    new_class = req.param("DBInstanceClass")
    lat = req.latency
    instance = req.backend().databases.get(ident)
    if instance is not None and lat.busy(instance):
        return req.refuse(
            "InvalidDBInstanceState", f"Database instance {ident} is not in available state."
        )
    old_class = instance.db_instance_class if instance is not None else None
    status, headers, answer = req.call()
    if not (_ok(status) and instance is not None and new_class and new_class != old_class):
        return status, headers, answer
    seconds = lat.scaled("rds.modify")
    if seconds <= 0:
        return status, headers, answer
    instance.db_instance_class = old_class
    instance.pending_modified_values = {"DBInstanceClass": new_class}

    def apply() -> None:
        instance.db_instance_class = new_class
        instance.pending_modified_values = None

    lat.add(
        StatusTransition(
            "rds", ident, req.region, "modifying", req.action, seconds, obj=instance,
            on_finish=apply,
        )
    )  # fmt: skip
    answer = _splice(
        answer, "DBInstance", req.query("DescribeDBInstances", DBInstanceIdentifier=ident)
    )
    return status, _with_length(headers, answer), answer


def _rds_snapshot(req: _Request) -> Answer:
    ident = req.param("DBInstanceIdentifier") or ""
    snapshot_id = req.param("DBSnapshotIdentifier") or ""
    lat = req.latency
    backend = req.backend()
    instance = backend.databases.get(ident)
    if instance is not None and lat.busy(instance):
        return req.refuse(
            "InvalidDBInstanceState",
            f"Cannot create a snapshot because the database instance {ident} is not "
            "currently in the available state.",
        )
    status, headers, answer = req.call()
    seconds = lat.scaled("rds.snapshot")
    snapshot = backend.database_snapshots.get(snapshot_id) or backend.database_snapshots.get(
        snapshot_id.lower()
    )
    if not (_ok(status) and seconds > 0 and snapshot is not None and instance is not None):
        return status, headers, answer
    lat.add(
        StatusTransition(
            "rds", snapshot.db_snapshot_identifier, req.region, "creating", req.action, seconds,
            obj=snapshot,
        )
    )  # fmt: skip
    lat.add(
        StatusTransition("rds", ident, req.region, "backing-up", req.action, seconds, obj=instance)
    )
    answer = _splice(
        answer,
        "DBSnapshot",
        req.query("DescribeDBSnapshots", DBSnapshotIdentifier=snapshot.db_snapshot_identifier),
    )
    return status, _with_length(headers, answer), answer


# -- ElastiCache


def _group_refusal(req: _Request, group_id: str) -> Answer:
    return req.refuse(
        "InvalidReplicationGroupState",
        f"Replication group {group_id} must be in available state.",
    )


def _cache_modify(req: _Request) -> Answer:
    group_id = req.param("ReplicationGroupId") or ""
    new_type = req.param("CacheNodeType")
    lat = req.latency
    group = req.backend().replication_groups.get(group_id)
    if group is not None and lat.busy(group):
        return _group_refusal(req, group_id)
    old_type = group.cache_node_type if group is not None else None
    status, headers, answer = req.call()
    seconds = lat.scaled("cache.modify")
    if not (_ok(status) and group is not None and new_type and new_type != old_type):
        return status, headers, answer
    if seconds <= 0:
        return status, headers, answer
    group.cache_node_type = old_type

    def apply() -> None:
        group.cache_node_type = new_type

    lat.add(
        StatusTransition(
            "elasticache", group_id, req.region, "modifying", req.action, seconds, obj=group,
            on_finish=apply,
        )
    )  # fmt: skip
    answer = _splice(
        answer,
        "ReplicationGroup",
        req.query("DescribeReplicationGroups", ReplicationGroupId=group_id),
    )
    return status, _with_length(headers, answer), answer


def _cache_snapshot(req: _Request) -> Answer:
    group_id = req.param("ReplicationGroupId")
    name = req.param("SnapshotName") or ""
    lat = req.latency
    backend = req.backend()
    group = backend.replication_groups.get(group_id) if group_id else None
    if group is not None and lat.busy(group):
        return _group_refusal(req, group_id or "")
    status, headers, answer = req.call()
    seconds = lat.scaled("cache.snapshot")
    snapshot = backend.snapshots.get(name)
    if not (_ok(status) and seconds > 0 and snapshot is not None):
        return status, headers, answer
    lat.add(
        StatusTransition(
            "elasticache", name, req.region, "creating", req.action, seconds, obj=snapshot,
            attr="snapshot_status",
        )
    )  # fmt: skip
    if group is not None:
        lat.add(
            StatusTransition(
                "elasticache", group_id or "", req.region, "snapshotting", req.action, seconds,
                obj=group,
            )
        )  # fmt: skip
    answer = _splice(answer, "Snapshot", req.query("DescribeSnapshots", SnapshotName=name))
    return status, _with_length(headers, answer), answer


# -- EC2 NAT gateways

_NAT_ID = re.compile(rb"<natGatewayId>([^<]+)</natGatewayId>")


def _nat_create(req: _Request) -> Answer:
    status, headers, answer = req.call()
    seconds = req.latency.scaled("nat.create")
    match = _NAT_ID.search(answer)
    if not (_ok(status) and seconds > 0 and match):
        return status, headers, answer
    nat_id = match.group(1).decode()
    nat = req.backend().nat_gateways.get(nat_id)
    if nat is None:
        return status, headers, answer
    req.latency.add(
        StatusTransition(
            "ec2", nat_id, req.region, "pending", req.action, seconds, obj=nat, attr="state",
            final="available",
        )
    )  # fmt: skip
    answer = answer.replace(b"<state>available</state>", b"<state>pending</state>", 1)
    return status, _with_length(headers, answer), answer


def _nat_delete(req: _Request) -> Answer:
    nat_id = req.param("NatGatewayId") or ""
    nat = req.backend().nat_gateways.get(nat_id)
    status, headers, answer = req.call()
    seconds = req.latency.scaled("nat.delete")
    if _ok(status) and seconds > 0 and nat is not None:
        req.latency.add(
            StatusTransition(
                "ec2", nat_id, req.region, "deleting", req.action, seconds, obj=nat,
                attr="state", final="deleted",
            )
        )  # fmt: skip
    return status, headers, answer


# -- ECS


def _ecs_answer(req: _Request, status: str, headers: list[tuple[str, str]], svc: Any) -> Answer:
    """moto's answer with its "service" re-described as it is now."""
    described = json.loads(
        req.call(
            json.dumps({"cluster": svc.cluster_arn, "services": [svc.arn]}).encode(),
            target="DescribeServices",
        )[2]
    )
    body = json.dumps({"service": described["services"][0]}).encode()
    return status, _with_length(headers, body), body


def _ecs_service(req: _Request, cluster: str, name: str) -> Any:
    from moto.ecs.exceptions import ClusterNotFoundException, ServiceNotFoundException

    try:
        return req.backend()._get_service(cluster, name)
    except (ClusterNotFoundException, ServiceNotFoundException):
        return None


def _ecs_create(req: _Request) -> Answer:
    spec = req.json()
    status, headers, answer = req.call()
    if not _ok(status):
        return status, headers, answer
    svc = _ecs_service(req, spec.get("cluster") or "default", spec.get("serviceName") or "")
    if svc is None:
        return status, headers, answer
    seconds = req.latency.scaled("ecs.deploy")
    if seconds <= 0 or not svc.deployments or svc.desired_count == 0:
        settle_service(svc)
    else:
        primary = svc.deployments[0]
        primary["rolloutState"] = "IN_PROGRESS"
        primary["rolloutStateReason"] = f"ECS deployment {primary['id']} in progress."
        req.latency.add(
            EcsTransition(
                "ecs", f"{svc.cluster_name}/{svc.name}", req.region, "deployment in progress",
                req.action, seconds, svc=svc, primary=primary,
            )
        )  # fmt: skip
    return _ecs_answer(req, status, headers, svc)


def _ecs_update(req: _Request) -> Answer:
    spec = req.json()
    lat = req.latency
    svc = _ecs_service(req, spec.get("cluster") or "default", spec.get("service") or "")
    if svc is None:
        return req.call()
    before = (svc.task_definition, json.dumps(svc.network_configuration, sort_keys=True))
    running = svc.running_count
    status, headers, answer = req.call()
    if not _ok(status):
        return status, headers, answer
    after = (svc.task_definition, json.dumps(svc.network_configuration, sort_keys=True))
    resource = f"{svc.cluster_name}/{svc.name}"
    deploy, scale = lat.scaled("ecs.deploy"), lat.scaled("ecs.scale")
    if after != before or spec.get("forceNewDeployment"):
        # The old deployments run what the service ran before moto's update.
        rollout = lat._rollout(svc, resource, req.region, req.action, deploy, running)
        if deploy <= 0:
            settle_service(svc, rollout.primary)
        else:
            lat.add(rollout)
    elif lat.ecs_busy(svc):
        lat.settle()  # the rollout under way follows the new desired count
    elif scale <= 0 or not svc.deployments:
        settle_service(svc)
    elif running != svc.desired_count:
        primary = svc.deployments[0]
        lat.add(
            EcsTransition(
                "ecs", resource, req.region, "scaling", req.action, scale, svc=svc,
                primary=primary, start_running=running,
            )
        )  # fmt: skip
    else:
        settle_service(svc)
    return _ecs_answer(req, status, headers, svc)


_HOOKS: dict[tuple[str, str], Callable[[_Request], Answer]] = {
    ("rds", "ModifyDBInstance"): _rds_modify,
    ("rds", "CreateDBSnapshot"): _rds_snapshot,
    ("elasticache", "ModifyReplicationGroup"): _cache_modify,
    ("elasticache", "CreateSnapshot"): _cache_snapshot,
    ("ec2", "CreateNatGateway"): _nat_create,
    ("ec2", "DeleteNatGateway"): _nat_delete,
    ("ecs", "CreateService"): _ecs_create,
    ("ecs", "UpdateService"): _ecs_update,
}


def check_factor(value: Any) -> float:
    """A latency factor: a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError("'factor' must be a number >= 0 (0: instant)")
    if not math.isfinite(value) or value < 0:
        raise SpecError("'factor' must be a number >= 0 (0: instant)")
    return float(value)
