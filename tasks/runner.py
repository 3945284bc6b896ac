"""The generic Prefect tasks that run any Step: checkpointed, retried, logged.

`checkpoint_key` decides, from the step's ledger chain, whether the step can be skipped: its
checkpoint holds in AWS (settling waited out; drift appended to the chain). It answers the
checkpoint's own key, under which `run_step`'s Record is cached (state Cached), or a fresh
key, so the step runs. `run_step` resumes or applies the change and appends to the chain;
`rollback_step` walks the chain back. Retries cover what another try can fix: throttling,
5xx and connection trouble, a deadline reached while AWS was settling; never a refusal, a
validation or access error, a changed plan, a drift or a bug.
"""

import threading
from collections import OrderedDict
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from prefect.tasks import Task

from phasegate.checkpoints import task_result_storage
from phasegate.config import EnvironmentConfig, load_environment
from phasegate.errors import WaitTimeout
from phasegate.ledger import Ledger, rollback_change
from phasegate.lifecycle import StepFailed, checkpoint, execute, plan, plan_difference, undo
from phasegate.retry import is_transient
from phasegate.steps import Change, PlanChanged, Record, Step, StepContext, one_reading
from tasks.approvals import slug
from tasks.registry import STEPS, ordered

MAX_CONTEXTS = 16
"""Contexts kept per process: more than a worker runs at once (its limit), far fewer than the
environments a long-lived worker serves over a fleet (each holds clients and a price table)."""

_contexts: OrderedDict[tuple[str, str], StepContext] = OrderedDict()
_contexts_lock = threading.Lock()


def context_for(env: str) -> StepContext:
    """One StepContext (config, clients, prices) per environment and config per process,
    shared by threads. The config is read again each time: a long-lived process (a worker,
    `phasegate serve`) must see targets an operator changed since the last run. Least
    recently used contexts beyond MAX_CONTEXTS, and an environment's context for a config it
    no longer has, are dropped, so a worker serving a fleet does not grow by one per
    environment it ever ran."""
    config = load_environment(env)
    key = (env, config.model_dump_json())
    with _contexts_lock:
        if key in _contexts:
            _contexts.move_to_end(key)
            return _contexts[key]
        for stale in [k for k in _contexts if k[0] == env]:
            del _contexts[stale]
        _contexts[key] = StepContext.for_environment(config)
        while len(_contexts) > MAX_CONTEXTS:
            _contexts.popitem(last=False)
        return _contexts[key]


def step_for(env: str, step_id: str) -> Step:
    return STEPS[step_id](context_for(env))


def worth_retrying(error: BaseException) -> bool:
    """Only what another try could fix: a transient AWS error (throttling, 5xx, connection)
    that outlasted the call's own retries, or a wait that reached its deadline while AWS was
    still converging. Never a refusal, a changed plan, a drift, a validation, access or
    not-found error, a waiter's terminal failure or a bug."""
    cause = error.cause if isinstance(error, StepFailed) else error
    if isinstance(cause, WaitTimeout):
        return type(cause) is WaitTimeout  # a StepTimeout is the step's own cap: final
    if isinstance(cause, ClientError | BotoCoreError):
        return is_transient(cause)
    return False


def is_retryable(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect retry condition: see `worth_retrying`."""
    try:
        state.result()
    except Exception as exc:
        return worth_retrying(exc)
    return False


def _publish_drift(record: Record) -> None:
    """The drift a re-run found, as a Prefect artifact an operator sees on the run."""
    rows = "\n".join(
        f"| `{field}` | {seen['recorded']!r} | {seen['found']!r} |"
        for field, seen in record.diff.items()
    )
    create_markdown_artifact(
        key=slug(f"drift-{record.environment}-{record.step}")[:64],
        description=f"Drift of {record.step} on {record.environment}",
        markdown=(
            f"# Drift: `{record.step}` on `{record.environment}`\n\n{record.detail}\n\n"
            "| Field | Recorded | Found |\n|---|---|---|\n" + rows + "\n\n"
            "The step plans again from the present; `phasegate rollback` still restores the "
            "state from before phasegate first touched it (`phasegate history` shows the chain)."
        ),
    )


def _key_param(_context: Any, parameters: dict[str, Any]) -> str:
    return parameters["key"]


@task(name="checkpoint-key", task_run_name="checkpoint {step_id}", cache_policy=NO_CACHE)
def checkpoint_key(env: str, step_id: str) -> str:
    """The key to run `step_id` under: its checkpoint's, if that holds in AWS, else a new one."""
    step = step_for(env, step_id)
    ledger = Ledger(step.ctx.config)
    held = checkpoint(step, ledger)
    if held is not None:
        return held.key
    head = ledger.head(step.phase, step.id)
    if head is not None and head.outcome == "drift":
        _publish_drift(head)
    following = head.seq + 1 if head else 1
    return f"{step.ctx.config.name}/{step.phase}/{step.id}/{step.target_hash()}-n{following}"


@task(
    name="run-step",
    task_run_name="{step_id}",
    cache_key_fn=_key_param,
    persist_result=True,
    result_serializer="json",
    retry_condition_fn=is_retryable,
)
def run_step(
    env: str,
    step_id: str,
    key: str,
    approver: str | None = None,
    comment: str | None = None,
    approved_digest: str | None = None,
) -> Record:
    """Resume or plan -> apply -> verify for one step; the applied Record is the cached result.

    `approved_digest` is the digest of the change the operator approved: a different change
    now stops the step before it changes anything. Who approved and what they said travel
    in the Record (not in the cache key).
    """
    step = step_for(env, step_id)
    return execute(step, key, Ledger(step.ctx.config), approved_digest, approver, comment)


@task(
    name="rollback-step",
    task_run_name="rollback {step_id}",
    retry_condition_fn=is_retryable,
    cache_policy=NO_CACHE,
)
def rollback_step(env: str, step_id: str) -> str:
    """Undo a step back to before phasegate first touched it; what happened, in words."""
    step = step_for(env, step_id)
    return undo(step, Ledger(step.ctx.config))


def configured(task_: Task[..., Any], config: EnvironmentConfig) -> Task[..., Any]:
    """A task with the environment's retry settings and checkpoint storage.

    The storage travels with the task, not with the process's settings, so a run started by a
    worker (no CLI around it) or resumed after a suspended approval writes and finds the
    Records where every other process does. No Prefect task timeout: it cannot interrupt a
    worker thread; the step's own deadline (phasegate.deadline) does.
    """
    return task_.with_options(
        retries=config.executor.step_retries,
        retry_delay_seconds=config.executor.retry_delay_seconds,
        result_storage=task_result_storage(config),
    )


def planned_changes(env: str, phase: int) -> list[tuple[str, Change | None]]:
    """(step id, what it would change now or None), in dependency order; read-only, one
    discovery of the environment shared by the steps (`one_reading`)."""
    with one_reading():
        return [(step_id, plan(step_for(env, step_id))) for step_id in ordered(phase)]


def _plan_of_this_run(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    run, env, phase = context.task_run.flow_run_id, parameters["env"], parameters["phase"]
    return f"plan/{run}/{env}/{phase}/{parameters.get('attempt', 0)}"


@task(
    name="plan-phase",
    task_run_name="plan phase {phase}",
    cache_key_fn=_plan_of_this_run,
    persist_result=True,
    result_serializer="json",
)
def plan_phase(env: str, phase: int, attempt: int = 0) -> list[tuple[str, Change | None]]:
    """The phase's plan inside a run, for the approval form and the run's record.

    Cached per flow run: a run suspended for an approval is resumed from the top in a new
    process, after some steps may have run; it must show the operator the same plan (and so
    find the answer already given under the same question) rather than what is left of it.
    confirm_plan then checks that plan against AWS and the ledger; a plan that changed is
    planned afresh under the next `attempt`.
    """
    return planned_changes(env, phase)


def plan_for_run(env: str, phase: int, attempt: int = 0) -> list[tuple[str, Change | None]]:
    """`plan_phase` stored where the environment's checkpoints are, as (step, change) pairs."""
    task_ = plan_phase.with_options(result_storage=task_result_storage(context_for(env).config))
    return [(step, change) for step, change in task_(env, phase, attempt)]


@task(name="confirm-plan", task_run_name="confirm plan of phase {phase}", cache_policy=NO_CACHE)
def confirm_plan(env: str, phase: int, approved: list[tuple[str, Change | None]]) -> None:
    """Re-plan every step whose change was approved; PlanChanged naming each difference when
    AWS changed since (by hand, say) and the change is no longer the approved one. Read-only,
    and before any step runs, so a changed plan stops the phase having changed nothing."""
    config = context_for(env).config
    ledger = Ledger(config)
    differences = []
    with one_reading():
        replanned = {
            step_id: plan(step_for(env, step_id))
            for step_id, change in approved
            if change is not None and change.actions
        }
    for step_id, change in approved:
        if change is None or not change.actions:
            continue
        now = replanned[step_id]
        if now is not None and now.digest() == change.digest():
            continue
        done = ledger.checkpoint(phase, step_id)
        if now is None and done and done.change and done.change.digest() == change.digest():
            continue  # applied as approved, earlier in this run (before it was suspended)
        differences += [f"{step_id}: {d}" for d in plan_difference(change, now)]
    if differences:
        raise PlanChanged(
            f"{config.name}: phase {phase}: the plan changed since it was approved; nothing "
            "was changed: " + "; ".join(differences)
        )


def rollback_preview(env: str, phase: int) -> list[tuple[str, Change | None]]:
    """What rolling `phase` back would undo and restore, per step in rollback order (the
    dependents first); read from the ledger only, no AWS call."""
    config = load_environment(env)
    ledger = Ledger(config)
    return [
        (step_id, rollback_change(step_id, ledger.undo_units(phase, step_id)))
        for step_id in reversed(ordered(phase))
    ]
