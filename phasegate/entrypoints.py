"""The CLI reaches flows by entrypoint, as Prefect deployments do, so the core never imports them.

Imports flow one way (flows -> tasks -> phasegate); this table is the one place the core
names a flow, as a string.
"""

import importlib
from typing import Any

PHASE_FLOWS = {1: "flows.phase1:phase1"}
ROLLBACK_FLOW = "flows.rollback:rollback_phase"
PLAN = "flows.plan:plan_phases"


def load(entrypoint: str) -> Any:
    """The object an entrypoint "package.module:name" names."""
    module, _, name = entrypoint.partition(":")
    return getattr(importlib.import_module(module), name)
