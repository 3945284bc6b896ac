"""A flow running in a background thread, found by its own id, and always stopped after a test.

A test never looks a run up by name: the session's Prefect server holds every test's runs (and
a leftover paused run of a failed test), so a name match may be another test's run. Either the
flow records its own id (`find_run`), or the FlowThread tags the runs it starts with a tag of
its own and finds its top-level run by that tag.
"""

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterParentTaskRunId,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun
from prefect.logging.handlers import APILogWorker


class FlowThread:
    """`target()` in a daemon thread: its result or its exception once joined.

    `find_run()` returns the flow run's id once it is known (None before). Without it, the
    thread runs `target` under a tag of its own (`self.tag`) and finds the one top-level flow
    run carrying that tag.
    """

    def __init__(
        self,
        target: Callable[[], Any],
        find_run: Callable[[], UUID | None] | None = None,
        label: str = "",
    ) -> None:
        self.label = label
        self.result: Any = None
        self.error: BaseException | None = None
        self.tag = f"test-run-{uuid4().hex}"
        self._find_run = find_run or (lambda: run_tagged(self.tag))
        self._run_id: UUID | None = None
        # Prefect's settings (the test's API URL) live in a context variable: the thread runs
        # in a copy of this context, or it would start a temporary API of its own instead.
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=context.run, args=(self._run, target), daemon=True)
        self.thread.start()

    def _run(self, target: Callable[[], Any]) -> None:
        try:
            with tags(self.tag):
                self.result = target()
        except BaseException as exc:
            self.error = exc

    def known_run_id(self) -> UUID | None:
        if self._run_id is None:
            self._run_id = self._find_run()
        return self._run_id

    @property
    def run_id(self) -> UUID:
        deadline = time.monotonic() + 60
        while (run_id := self.known_run_id()) is None:
            assert self.thread.is_alive(), f"no flow run: {self.error!r}"
            assert time.monotonic() < deadline, "the flow run never started"
            time.sleep(0.05)
        return run_id

    def read(self) -> FlowRun:
        with get_client(sync_client=True) as client:
            return client.read_flow_run(self.run_id)

    def wait_paused(self, timeout: float = 60) -> UUID:
        deadline = time.monotonic() + timeout
        while True:
            state = None
            if (run_id := self.known_run_id()) is not None:
                with get_client(sync_client=True) as client:
                    state = client.read_flow_run(run_id).state
                if state is not None and state.is_paused():
                    return run_id
            assert self.thread.is_alive(), f"flow ended before pausing ({state}): {self.error!r}"
            assert time.monotonic() < deadline, f"run never paused; it is {state or 'not found'}"
            time.sleep(0.1)

    def join(self, timeout: float = 60) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flow thread did not finish"


def run_tagged(tag: str) -> UUID | None:
    """The id of the top-level flow run tagged `tag` (its subflows carry the tag too)."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[tag]),
                parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True),
            )
        )
    assert len(runs) <= 1, f"{len(runs)} top-level flow runs tagged {tag}: {[r.id for r in runs]}"
    return runs[0].id if runs else None


def _is_paused(run_id: UUID) -> bool:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    return state is not None and state.is_paused()


def stop_all(
    started: list[FlowThread], reject: Callable[[UUID], object], timeout: float = 120
) -> None:
    """Never leave a paused flow thread behind, even after a failure: reject each run whenever
    it is paused (a flow with retries, or a second approval, pauses again) until its thread
    ends. Then send the runs' last logs while the API is up (queued at exit they retry for a
    minute). Meant for a fixture's teardown: it runs whether the test passed or not."""
    try:
        for bg in started:
            deadline = time.monotonic() + timeout
            while bg.thread.is_alive() and time.monotonic() < deadline:
                with contextlib.suppress(Exception):  # not started, or ended meanwhile
                    if (run_id := bg.known_run_id()) is not None and _is_paused(run_id):
                        reject(run_id)
                bg.thread.join(0.2)
    finally:
        APILogWorker.drain_all(timeout=10)
    alive = [bg.label or bg.tag for bg in started if bg.thread.is_alive()]
    assert not alive, f"flow threads still running after {timeout} s: {alive}"
