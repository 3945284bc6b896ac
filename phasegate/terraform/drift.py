"""Before a phase: does the environment's Terraform stack still match AWS?

`terraform plan -detailed-exitcode` with the current variables (phasegate's included): exit 0
is a clean stack; exit 2 means AWS and Terraform disagree (someone changed AWS by hand, or
the stack's code changed), and a phase started on that would apply, along with its own
change, whatever else Terraform wants. So the phase does not start unless the operator
accepted it (`terraform.accept_drift: true` in the environment's config); either way the
drift is logged with what Terraform would change.
"""

import structlog

from phasegate.config import EnvironmentConfig
from phasegate.errors import PhasegateError
from phasegate.terraform.engine import TerraformError
from phasegate.terraform.executor import stack_for
from phasegate.terraform.stack import stack_lock

log = structlog.get_logger("phasegate.terraform")


class StackDrifted(PhasegateError):
    """The stack plans changes before the phase has changed anything."""


def check_before_phase(config: EnvironmentConfig, phase: int) -> str | None:
    """None for the API executor or a clean stack; what drifted when the operator accepted it.
    Raises StackDrifted otherwise, and TerraformError naming the environment when the plan
    itself fails (uninitialized, locked, provider error)."""
    if config.executor.via != "terraform":
        return None
    where = f"{config.name}: phase {phase}: Terraform drift check"
    stack = stack_for(config.terraform, config.source, where)
    try:
        with stack_lock(stack.directory):
            stack.select_workspace()
            pending, what = stack.drifted()
    except TerraformError as exc:
        raise TerraformError(f"{where}: {exc}", exc.locked) from None
    bound = log.bind(environment=config.name, phase=phase)
    if not pending:
        bound.info("terraform.clean")
        return None
    bound.warning("terraform.drift", changes=what, accepted=config.terraform.accept_drift)
    if not config.terraform.accept_drift:
        raise StackDrifted(
            f"{where}: the stack in {stack.directory} (workspace {stack.engine.workspace}) "
            f"plans changes before the phase changed anything: {what}; nothing was changed. "
            "Reconcile it, or set terraform.accept_drift: true to start anyway"
        )
    return what
