"""What moto lacks for phase 2's steps, answered in AWS's own wire formats.

- Auto Scaling DisableMetricsCollection: not implemented (HTTP 500); scaling.enable's
  rollback calls it to undo the group metrics it enabled. Applied to moto's group.
- Budgets DescribeSubscribersForNotification and UpdateBudget: not implemented (HTTP 500);
  monitoring.enable's verify reads where each budget notification goes, and a changed budget
  amount is an update. Answered from, and applied to, moto's stored budget.
- Application Auto Scaling tags: moto drops RegisterScalableTarget's Tags and lacks
  ListTagsForResource, TagResource and UntagResource. The front keeps the tags on moto's
  scalable target (they go with it when it is deregistered or moto is reset).
- RDS ModifyDBInstance with a new DBParameterGroupName, and RebootDBInstance: moto reports the
  group `in-sync` at once. On AWS a newly attached group (and a static parameter in it) waits
  for a reboot: `pending-reboot` until RebootDBInstance. The front keeps that status per
  instance and writes it into DescribeDBInstances answers.

Product code never knows: it calls AWS's API and reads AWS's answers.
"""

import io
import json
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from phasegate.sandbox.latency import account_and_region

_XMLNS_AUTOSCALING = "http://autoscaling.amazonaws.com/doc/2011-01-01/"

_pending_reboot: set[tuple[str, str, str]] = set()  # (account, region, DB instance id)
_pending_lock = threading.Lock()


def _body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _answer(start_response: Callable[..., Any], status: str, ctype: str, body: bytes) -> list:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _disable_metrics(environ: dict[str, Any], params: dict[str, list[str]], start: Any) -> list:
    from moto.autoscaling.models import autoscaling_backends

    account, region = account_and_region(environ)
    name = params.get("AutoScalingGroupName", [""])[0]
    group = autoscaling_backends[account][region].autoscaling_groups.get(name)
    if group is None:
        body = (
            f'<ErrorResponse xmlns="{_XMLNS_AUTOSCALING}"><Error><Type>Sender</Type>'
            f"<Code>ValidationError</Code><Message>Group {name} not found</Message></Error>"
            "<RequestId>phasegate-sandbox</RequestId></ErrorResponse>"
        ).encode()
        return _answer(start, "400 Bad Request", "text/xml", body)
    named = [v[0] for k, v in params.items() if re.fullmatch(r"Metrics\.member\.\d+", k)]
    group.metrics = [m for m in group.metrics if named and m not in named]
    body = (
        f'<DisableMetricsCollectionResponse xmlns="{_XMLNS_AUTOSCALING}">'
        "<ResponseMetadata><RequestId>phasegate-sandbox</RequestId></ResponseMetadata>"
        "</DisableMetricsCollectionResponse>"
    ).encode()
    return _answer(start, "200 OK", "text/xml", body)


def _budget_subscribers(environ: dict[str, Any], start: Any) -> list:
    from moto.budgets.models import budgets_backends

    request = json.loads(_body(environ) or b"{}")
    account = request.get("AccountId", "")
    backend = budgets_backends[account_and_region(environ)[0]]["aws"]
    budget = backend.budgets[account].get(request.get("BudgetName", ""))
    wanted = request.get("Notification", {})
    found = None
    for notification in budget.notifications if budget else []:
        details = notification.details
        if all(details.get(k) == v for k, v in wanted.items() if k != "ThresholdType"):
            found = notification
    if found is None:
        body = json.dumps(
            {"__type": "NotFoundException", "Message": "the notification does not exist"}
        ).encode()
        return _answer(start, "400 Bad Request", "application/x-amz-json-1.1", body)
    body = json.dumps({"Subscribers": found.subscribers}).encode()
    return _answer(start, "200 OK", "application/x-amz-json-1.1", body)


def _update_budget(environ: dict[str, Any], start: Any) -> list:
    from moto.budgets.models import budgets_backends

    request = json.loads(_body(environ) or b"{}")
    new = request.get("NewBudget", {})
    backend = budgets_backends[account_and_region(environ)[0]]["aws"]
    budget = backend.budgets[request.get("AccountId", "")].get(new.get("BudgetName", ""))
    if budget is None:
        body = json.dumps({"__type": "NotFoundException", "Message": "no such budget"}).encode()
        return _answer(start, "400 Bad Request", "application/x-amz-json-1.1", body)
    budget.budget.update(new)
    return _answer(start, "200 OK", "application/x-amz-json-1.1", b"{}")


def _scalable_targets(environ: dict[str, Any]) -> list[Any]:
    from moto.applicationautoscaling.models import applicationautoscaling_backends

    account, region = account_and_region(environ)
    backend = applicationautoscaling_backends[account][region]
    return [t for by_id in backend.targets.values() for t in by_id.values()]


def _scaling_tags(
    environ: dict[str, Any], action: str, moto: Callable[..., Iterable[bytes]], start: Any
) -> Iterable[bytes]:
    """Tags of Application Auto Scaling targets, kept on moto's target objects."""
    request = json.loads(_body(environ) or b"{}")
    if action == "RegisterScalableTarget":
        answer = list(moto(environ, start))
        for target in _scalable_targets(environ):
            if target.resource_id == request.get("ResourceId") and not hasattr(
                target, "phasegate_tags"
            ):
                target.phasegate_tags = dict(request.get("Tags") or {})
        return answer
    arn = request.get("ResourceARN", "")
    target = next((t for t in _scalable_targets(environ) if t.arn == arn), None)
    ctype = "application/x-amz-json-1.1"
    if target is None:
        body = json.dumps(
            {"__type": "ResourceNotFoundException", "Message": f"{arn} not found"}
        ).encode()
        return _answer(start, "400 Bad Request", ctype, body)
    tags = getattr(target, "phasegate_tags", {})
    if action == "TagResource":
        target.phasegate_tags = {**tags, **request.get("Tags", {})}
    elif action == "UntagResource":
        target.phasegate_tags = {k: v for k, v in tags.items() if k not in request["TagKeys"]}
    else:
        return _answer(start, "200 OK", ctype, json.dumps({"Tags": tags}).encode())
    return _answer(start, "200 OK", ctype, b"{}")


def _note_parameter_group(environ: dict[str, Any], action: str, params: dict) -> None:
    account, region = account_and_region(environ)
    identifier = params.get("DBInstanceIdentifier", [""])[0]
    key = (account, region, identifier)
    with _pending_lock:
        if action == "RebootDBInstance":
            _pending_reboot.discard(key)
        elif params.get("DBParameterGroupName"):
            _pending_reboot.add(key)


def _rewrite_apply_status(
    environ: dict[str, Any], moto: Callable[..., Iterable[bytes]], start_response: Any
) -> list[bytes]:
    """moto's answer, with `pending-reboot` as ParameterApplyStatus where a reboot is due."""
    account, region = account_and_region(environ)
    captured: list[Any] = []
    body = b"".join(moto(environ, lambda status, headers, *_: captured.extend([status, headers])))
    with _pending_lock:
        pending = {i for a, r, i in _pending_reboot if (a, r) == (account, region)}

    def instance(match: re.Match[str]) -> str:
        text = match.group(0)
        ident = re.search(r"<DBInstanceIdentifier>([^<]+)</DBInstanceIdentifier>", text)
        if ident and ident.group(1) in pending:
            return text.replace(
                "<ParameterApplyStatus>in-sync</ParameterApplyStatus>",
                "<ParameterApplyStatus>pending-reboot</ParameterApplyStatus>",
            )
        return text

    if pending:
        text = re.sub(r"<DBInstance>.*?</DBInstance>", instance, body.decode(), flags=re.S)
        body = text.encode()
    status, headers = captured
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    return _answer(start_response, status, dict(headers).get("Content-Type", "text/xml"), body)


_SERVICE_IN_AUTH = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


class Phase2Gaps:
    """WSGI middleware around moto's app: every request that reaches moto passes here."""

    def __init__(self, moto: Callable[..., Iterable[bytes]]) -> None:
        self.moto = moto

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/moto-api/reset":
            with _pending_lock:
                _pending_reboot.clear()
            return self.moto(environ, start_response)
        match = _SERVICE_IN_AUTH.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = match.group(1) if match else ""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        params: dict[str, list[str]] = {}
        if not target and environ.get("CONTENT_TYPE", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            params = parse_qs(_body(environ).decode(errors="replace"))
        action = target.rsplit(".", 1)[-1] if target else params.get("Action", [""])[0]
        if service == "autoscaling" and action == "DisableMetricsCollection":
            return _disable_metrics(environ, params, start_response)
        if service == "budgets" and action == "DescribeSubscribersForNotification":
            return _budget_subscribers(environ, start_response)
        if service == "budgets" and action == "UpdateBudget":
            return _update_budget(environ, start_response)
        if service == "application-autoscaling" and action in (
            "RegisterScalableTarget",
            "ListTagsForResource",
            "TagResource",
            "UntagResource",
        ):
            return _scaling_tags(environ, action, self.moto, start_response)
        if service == "rds" and action in ("ModifyDBInstance", "RebootDBInstance"):
            _note_parameter_group(environ, action, params)
            return _rewrite_apply_status(environ, self.moto, start_response)
        if service == "rds" and action == "DescribeDBInstances":
            return _rewrite_apply_status(environ, self.moto, start_response)
        return self.moto(environ, start_response)
