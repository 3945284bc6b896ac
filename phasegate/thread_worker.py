"""A worker for the `process` work pool that runs each flow run in a thread of its own process.

Prefect's process worker starts a whole Python per flow run (`python -m prefect.engine`):
Prefect, boto3 and every step imported again, about 190 MB resident each (measured in
bench/fleet.py), and 3-4 s of CPU before the run does anything. A fleet at max_concurrency 10
is then ten such processes. This worker takes the same runs from the same pool (they stay
separate flow runs of their deployments, with their own states, logs, locks and
checkpoints), but runs each one in a thread, under Prefect's own flow engine (`run_flow`),
in one process that has imported the code once.

    python -m phasegate.thread_worker --pool phasegate --limit 10 [--name NAME]

What a thread gives up against a process, and why it is acceptable here:
- a run is not killed from outside: cancelling a *running* run is not carried out (a run
  suspended for approval holds no thread and is cancelled as usual); each step has its own
  timeout (`phases.step_timeout_seconds`), which ends a stuck run;
- one crash of the interpreter ends every run in it: their environment locks' leases run
  out and the runs resume from their checkpoints, as after any killed worker;
- the code is this repository's, as imported when the worker started: only deployments whose
  pull step sets the working directory to this repository are run (what `phasegate deploy`
  makes); any other run is refused (marked Crashed, the reason in its log).
"""

import argparse
import asyncio
import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import Abort, Pause
from prefect.flow_engine import flow_run_logger, run_flow
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.workers.process import (
    ProcessJobConfiguration,
    ProcessWorker,
    ProcessWorkerResult,
)

from phasegate.home import REPO_ROOT

_flows: dict[str, Flow[..., Any]] = {}
_flows_lock = threading.Lock()


def _code_directory(pull_steps: list[dict[str, Any]] | None) -> Path | None:
    for step in pull_steps or []:
        for name, args in step.items():
            if name.endswith("set_working_directory"):
                return Path(args["directory"]).resolve()
    return None


def _flow_for(entrypoint: str) -> Flow[..., Any]:
    """The flow at `entrypoint`, loaded once per process (its module executes once)."""
    with _flows_lock:
        if entrypoint not in _flows:
            _flows[entrypoint] = load_flow_from_entrypoint(
                str(REPO_ROOT / entrypoint), use_placeholder_flow=False
            )
        return _flows[entrypoint]


def execute(flow_run_id: Any) -> int:
    """Run one flow run to its end (or its suspension) in the calling thread; 0 or 1."""
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        if flow_run.deployment_id is None:
            return 1  # a worker only ever gets deployment runs
        deployment = client.read_deployment(flow_run.deployment_id)
    logger = flow_run_logger(flow_run=flow_run)
    code = _code_directory(deployment.pull_steps)
    if code != REPO_ROOT.resolve() or not deployment.entrypoint:
        logger.error(
            f"deployment {deployment.name}: its code is at {code or 'an unknown place'}, not "
            f"in {REPO_ROOT} where this thread worker runs; run it with `prefect worker start`"
        )
        return 1
    try:
        run_flow(_flow_for(deployment.entrypoint), flow_run=flow_run, error_logger=logger)
    except (Abort, Pause):
        return 0  # suspended for an approval, or aborted by the server: nothing is wrong
    except Exception:
        return 1  # the engine has set the run's final state and logged why
    return 0


class ThreadWorker(ProcessWorker):
    """A process-pool worker whose flow runs are threads; see the module's docstring."""

    _description = "Runs flow runs of a process pool in threads of the worker's own process."
    _display_name = "phasegate threads"

    async def run(
        self,
        flow_run: FlowRun,
        configuration: ProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> ProcessWorkerResult:
        if task_status is not None:
            task_status.started(os.getpid())
        status = await anyio.to_thread.run_sync(
            execute, flow_run.id, abandon_on_cancel=True, limiter=self._threads
        )
        return ProcessWorkerResult(status_code=status, identifier=f"thread {flow_run.id}")

    @property
    def _threads(self) -> anyio.CapacityLimiter:
        if getattr(self, "_thread_limiter", None) is None:
            self._thread_limiter = anyio.CapacityLimiter(self._limit or 10)
        return self._thread_limiter

    async def kill_infrastructure(
        self,
        infrastructure_pid: str,
        configuration: ProcessJobConfiguration,
        grace_seconds: int = 30,
    ) -> None:
        """A thread cannot be killed from outside: say so instead of signalling a PID."""
        self._logger.warning(
            "cancelling a running flow run is not carried out by the thread worker; its "
            "step timeouts end it"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", required=True)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--name")
    args = parser.parse_args()
    os.chdir(REPO_ROOT)

    async def serve() -> None:
        async with ThreadWorker(work_pool_name=args.pool, limit=args.limit, name=args.name) as w:
            await w.start()

    with contextlib.suppress(KeyboardInterrupt):  # SIGINT stops it, as `prefect worker`
        asyncio.run(serve())


if __name__ == "__main__":
    main()
