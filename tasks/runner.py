"""The generic Prefect tasks that run any Step: checkpointed, retried, logged.

`run_step` is cached under the checkpoint key (ENV/PHASE/STEP/TARGETHASH-gGEN) with its
Record persisted as JSON, so a re-run in a new process finds it and skips the step (state
Cached). Before a Record is trusted, `checkpoint_key` re-verifies it against AWS, read-only,
and retires it on drift. Retries cover transient failures only: a refusal, a bad input or an
access error fails at once.
"""

import threading
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import Task

from phasegate.checkpoints import Checkpoints, task_result_storage
from phasegate.config import EnvironmentConfig, load_environment
from phasegate.errors import AwsCallError, ConfigError, WaitTimeout
from phasegate.lifecycle import StepFailed, execute, plan, still_holds, undo
from phasegate.steps import Change, Record, Step, StepContext, StepRefused, VerificationFailed
from tasks.registry import STEPS, stages

_contexts: dict[str, StepContext] = {}
_contexts_lock = threading.Lock()

NOT_RETRYABLE = (AwsCallError, ConfigError, StepRefused, VerificationFailed, WaitTimeout)


def context_for(env: str) -> StepContext:
    """One StepContext (config, clients, prices) per environment per process, shared by threads."""
    with _contexts_lock:
        if env not in _contexts:
            _contexts[env] = StepContext.for_environment(load_environment(env))
        return _contexts[env]


def step_for(env: str, step_id: str) -> Step:
    return STEPS[step_id](context_for(env))


def is_retryable(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect retry condition: only what another try could fix."""
    try:
        state.result()
    except StepFailed as exc:
        return not isinstance(exc.cause, NOT_RETRYABLE)
    except NOT_RETRYABLE:
        return False
    except Exception:
        return True
    return False


def _key_param(_context: Any, parameters: dict[str, Any]) -> str:
    return parameters["key"]


@task(name="checkpoint-key", task_run_name="checkpoint {step_id}", cache_policy=NO_CACHE)
def checkpoint_key(env: str, step_id: str) -> str:
    """The key to run `step_id` under: its current one, or a fresh one if its Record drifted."""
    step = step_for(env, step_id)
    checkpoints = Checkpoints(step.ctx.config)
    key = checkpoints.key(step.phase, step.id, step.target_hash())
    record = checkpoints.read(key)
    if record is not None and not still_holds(step, record):
        checkpoints.retire(step.phase, step.id)
        key = checkpoints.key(step.phase, step.id, step.target_hash())
    return key


@task(
    name="run-step",
    task_run_name="{step_id}",
    cache_key_fn=_key_param,
    persist_result=True,
    result_serializer="json",
    retry_condition_fn=is_retryable,
)
def run_step(
    env: str, step_id: str, key: str, approver: str | None = None, comment: str | None = None
) -> Record:
    """observe -> plan -> apply -> verify for one step; the Record is the cached result.

    Who approved the change and what they said travel in the Record (not in the cache key).
    """
    step = step_for(env, step_id)
    record = execute(step, key, journal=Checkpoints(step.ctx.config))
    return record.model_copy(update={"approver": approver, "comment": comment or None})


@task(
    name="rollback-step",
    task_run_name="rollback {step_id}",
    retry_condition_fn=is_retryable,
    cache_policy=NO_CACHE,
)
def rollback_step(env: str, step_id: str) -> str:
    """Undo a step from its current Record and retire the Record; what happened, in words."""
    step = step_for(env, step_id)
    checkpoints = Checkpoints(step.ctx.config)
    record = checkpoints.current(step.phase, step.id)
    if record is None:
        return "not applied"
    undo(step, record)
    checkpoints.retire(step.phase, step.id)
    return "rolled back" if record.outcome == "applied" else "nothing to undo"


def configured(task_: Task[..., Any], config: EnvironmentConfig) -> Task[..., Any]:
    """A task with the environment's retry and timeout settings and checkpoint storage.

    The storage travels with the task, not with the process's settings, so a run started by a
    worker (no CLI around it) or resumed after a suspended approval writes and finds the
    Records where every other process does.
    """
    return task_.with_options(
        retries=config.executor.step_retries,
        retry_delay_seconds=config.executor.retry_delay_seconds,
        timeout_seconds=config.phases.step_timeout_seconds,
        result_storage=task_result_storage(config),
    )


def planned_changes(env: str, phase: int) -> list[tuple[str, Change | None]]:
    """(step id, what it would change now or None), in run order; read-only."""
    return [(step_id, plan(step_for(env, step_id))) for stage in stages(phase) for step_id in stage]


@task(name="plan-phase", task_run_name="plan phase {phase}", cache_policy=NO_CACHE)
def plan_phase(env: str, phase: int) -> list[tuple[str, Change | None]]:
    """The phase's plan inside a run, for the approval form and the run's record."""
    return planned_changes(env, phase)
