"""A flow running in a background thread, and waiting (through the API) until it pauses."""

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.logging.handlers import APILogWorker


class FlowThread:
    """`target()` in a daemon thread: its result or its exception once joined.

    `find_run()` returns the flow run's id once it is known (None before).
    """

    def __init__(
        self, target: Callable[[], Any], find_run: Callable[[], UUID | None], label: str = ""
    ) -> None:
        self.label = label
        self.result: Any = None
        self.error: BaseException | None = None
        self._find_run = find_run
        self._run_id: UUID | None = None
        # Prefect's settings (the test's API URL) live in a context variable: the thread runs
        # in a copy of this context, or it would start a temporary API of its own instead.
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=context.run, args=(self._run, target), daemon=True)
        self.thread.start()

    def _run(self, target: Callable[[], Any]) -> None:
        try:
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


def paused_run_named(part: str) -> UUID | None:
    """The id of a Paused flow run whose name contains `part`, if there is one."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    paused = [r for r in runs if r.state and r.state.is_paused() and part in r.name]
    return paused[0].id if paused else None


def stop_all(started: list[FlowThread], reject: Callable[[UUID], object]) -> None:
    """Never leave a paused flow thread behind, even after a failure: reject, then join."""
    for bg in started:
        if bg.thread.is_alive() and (run_id := bg.known_run_id()) is not None:
            with contextlib.suppress(Exception):  # it may have ended meanwhile
                reject(run_id)
        bg.thread.join(60)
        assert not bg.thread.is_alive()
    # Send the runs' last logs while the API is up; queued at exit they retry for a minute.
    APILogWorker.drain_all(timeout=10)
