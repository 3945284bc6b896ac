"""Sandbox gap-filler: tags on AWS Budgets budgets.

AWS keeps CreateBudget's ResourceTags on the budget (ARN arn:PARTITION:budgets::ACCOUNT:
budget/NAME) and answers ListTagsForResource, TagResource and UntagResource; moto (5.x)
drops the tags and lacks all three actions (HTTP 500), so Terraform's aws_budgets_budget,
which reads its tags after every create and on every refresh, could not be applied. Here the
tags are kept per budget ARN beside moto's budget, and the three actions are answered in the
JSON protocol's format; a budget moto no longer has has no tags (ResourceNotFoundException).
"""

import json
import threading
from typing import Any

from phasegate.sandbox.latency import account_and_region

CONTENT_TYPE = "application/x-amz-json-1.1"
_tags: dict[str, dict[str, str]] = {}  # budget ARN -> tags
_lock = threading.Lock()


def _request(environ: dict[str, Any]) -> dict[str, Any]:
    stream = environ["wsgi.input"]
    raw = stream.read()
    stream.seek(0)
    try:
        loaded = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _exists(environ: dict[str, Any], arn: str) -> bool:
    from moto.budgets.models import budgets_backends

    _, _, _, _, account, resource = (arn.split(":", 5) + [""] * 6)[:6]
    name = resource.removeprefix("budget/")
    backend = budgets_backends[account_and_region(environ)[0]]["aws"]
    return bool(account) and name in backend.budgets.get(account, {})


def _answer(status: str, body: dict[str, Any]) -> tuple[str, str, bytes]:
    return status, CONTENT_TYPE, json.dumps(body).encode()


def fill(
    service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]
) -> tuple[str, str, bytes] | None:
    """Keep CreateBudget's tags (moto then creates the budget); answer the tag actions."""
    if service != "budgets" or action not in (
        "CreateBudget",
        "ListTagsForResource",
        "TagResource",
        "UntagResource",
    ):
        return None
    request = _request(environ)
    if action == "CreateBudget":
        name = request.get("Budget", {}).get("BudgetName", "")
        arn = f"arn:aws:budgets::{request.get('AccountId', '')}:budget/{name}"
        with _lock:
            _tags[arn] = {t["Key"]: t["Value"] for t in request.get("ResourceTags") or []}
        return None
    arn = request.get("ResourceARN", "")
    if not _exists(environ, arn):
        return _answer(
            "400 Bad Request",
            {"__type": "ResourceNotFoundException", "Message": f"budget {arn} not found"},
        )
    key = "arn:aws:" + arn.split(":", 2)[2]  # the same budget in any partition
    with _lock:
        tags = _tags.setdefault(key, {})
        if action == "TagResource":
            tags.update({t["Key"]: t["Value"] for t in request.get("ResourceTags") or []})
        elif action == "UntagResource":
            for k in request.get("ResourceTagKeys") or []:
                tags.pop(k, None)
        else:
            listed = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
            return _answer("200 OK", {"ResourceTags": listed})
    return _answer("200 OK", {})
