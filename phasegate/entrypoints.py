"""The CLI reaches flows by entrypoint, as Prefect deployments do, so the core never imports them.

Imports flow one way (flows -> tasks -> phasegate); this table is the one place the core
names a flow, as a string.
"""

import importlib
from typing import Any

MIGRATION_FLOW = "flows.migration:migration"
ROLLBACK_FLOW = "flows.rollback:rollback_phase"
FAILOVER_FLOW = "flows.failover:failover"
ROLLBACK_PREVIEW = "tasks.runner:rollback_preview"
STEPS = "tasks.registry:STEPS"
PLAN = "flows.plan:plan_phases"
APPROVE = "tasks.approvals:resume_with"
STATUS = "tasks.status:environment_status"
FORCE_UNLOCK = "tasks.locks:force_unlock"


def load(entrypoint: str) -> Any:
    """The object an entrypoint "package.module:name" names."""
    module, _, name = entrypoint.partition(":")
    return getattr(importlib.import_module(module), name)
