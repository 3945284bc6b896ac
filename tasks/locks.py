"""One mutating run per environment: a Prefect global concurrency limit named after it.

The limit (`env-NAME`, limit 1) is taken strictly and with a lease, so a run killed while it
holds the environment frees it when the lease runs out instead of blocking it forever. Prefect
does not say who holds a slot, so the holder writes its flow run id into a Prefect Variable
beside the limit; a refused run names it.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import UTC, datetime

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectNotFound
from prefect.variables import Variable

from phasegate.config import EnvironmentConfig
from phasegate.errors import PhasegateError
from phasegate.logs import get_logger

LEASE_SECONDS = 60.0
SLOW_API_SECONDS = 60.0
"""How long a run keeps trying while nobody holds the environment: the acquisition timed out
only because the API answered slowly (measured: ten flow runs starting at once on two cores)."""
_held: ContextVar[frozenset[str]] = ContextVar("phasegate_held_environments", default=frozenset())


class EnvironmentBusy(PhasegateError):
    """Another run holds the environment; names that run."""


def limit_name(environment: str) -> str:
    return f"env-{environment}"


def _holder_variable(environment: str) -> str:
    return f"phasegate_lock_{environment.replace('-', '_')}"


def _ensure_limit(name: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def current_holder(environment: str) -> str | None:
    """What the last holder of the environment wrote: its flow run id and when it took it."""
    value = Variable.get(_holder_variable(environment), default=None)
    return str(value) if value else None


@contextmanager
def environment_lock(config: EnvironmentConfig, wait_seconds: float = 5.0) -> Iterator[None]:
    """Hold the environment for the calling flow run, or raise EnvironmentBusy after waiting.

    Re-entrant within one process, so a subflow (a phase's rollback inside the migration)
    runs under its parent's hold instead of waiting for itself.
    """
    if config.name in _held.get():
        yield
        return
    name = limit_name(config.name)
    _ensure_limit(name)
    context = FlowRunContext.get()
    run_id = str(context.flow_run.id) if context and context.flow_run else "(outside a flow run)"
    log = get_logger("locks", environment=config.name, resource=name)
    give_up = time.monotonic() + SLOW_API_SECONDS
    while True:
        slot = concurrency(
            name, occupy=1, timeout_seconds=wait_seconds, strict=True, lease_duration=LEASE_SECONDS
        )
        try:
            slot.__enter__()
            break
        except TimeoutError:
            if _held_slots(name) == 0 and time.monotonic() < give_up:
                log.info("lock.retry", reason="timed out with the environment free (slow API)")
                continue
            holder = current_holder(config.name) or "an unknown run"
            raise EnvironmentBusy(
                f"{config.name}: another run holds the environment ({holder}); refused after "
                f"waiting {wait_seconds:.0f}s. A killed run frees it within "
                f"{LEASE_SECONDS:.0f}s."
            ) from None
    token = _held.set(_held.get() | {config.name})
    try:
        Variable.set(
            _holder_variable(config.name),
            f"flow run {run_id} since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
            overwrite=True,
        )
        log.info("lock.acquired", flow_run_id=run_id)
        yield
    finally:
        _held.reset(token)
        slot.__exit__(None, None, None)
        log.info("lock.released", flow_run_id=run_id)


def _held_slots(name: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


def force_unlock(environment: str) -> str | None:
    """Break the environment's lock, as `terraform force-unlock` does; the holder it named.

    For an operator who knows the holder is dead and cannot wait for its lease. The limit is
    deleted and made anew, so the dead holder's lease, when it runs out, refers to a limit
    that no longer exists and cannot free a slot of the new one.
    """
    holder = current_holder(environment)
    with get_client(sync_client=True) as client, suppress(ObjectNotFound):
        client.delete_global_concurrency_limit_by_name(limit_name(environment))
    Variable.unset(_holder_variable(environment))
    _ensure_limit(limit_name(environment))
    return holder
