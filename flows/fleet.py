"""The fleet: many environments' migrations, each its own deployment run on the work pool.

This process only orchestrates: every environment's phase runs as a flow run of that
environment's deployment (`migration/ENV-phase-N`, made by `phasegate deploy`'s code), picked
up by whichever worker of the pool is free, on any machine. The fleet:

- takes a slot of a Prefect global concurrency limit (`fleet.max_concurrency`) before it
  creates an environment's run and gives it back when the environment's last run is final,
  so the limit holds across workers and across fleet runs sharing it;
- starts no new environment once more than `fleet.max_errors` have failed; the running ones
  finish, and the fleet ends Failed naming each failed environment and why;
- runs the waves in order (by default dev, staging, prod): a wave starts only when every
  environment of the previous one completed with its gates passed, and `fleet.bake_minutes`
  have passed since;
- leaves approvals to each run, as for single runs: a prod run suspends for its approval, and
  the fleet waits for it (its slot stays taken); or, with `fleet.approve_per: wave`, asks once
  per wave and phase on one form listing every environment's plan and cost delta, before any
  of the wave's runs starts, and hands each run the answer bound to its plan's digests
  (phasegate/wave_approval.py).

Each environment's run keeps its own environment lock and its checkpoints, so running a
fleet again re-runs only what is left: finished environments come back from their
checkpoints and change nothing.
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.context import FlowRunContext
from prefect.deployments import run_deployment

from phasegate import deploy as deployments
from phasegate.approvals import ApprovalExpired, ApprovalPolicy, ApprovalRejected
from phasegate.config import EnvironmentConfig
from phasegate.errors import PhasegateError
from phasegate.fleet import (
    EnvironmentOutcome,
    FleetSettings,
    FleetSummary,
    PhaseRow,
    outcomes_key,
    select_environments,
    waves_of,
)
from phasegate.logs import get_logger
from phasegate.status import environment_tag
from phasegate.wave_approval import WaveApproval
from tasks.fleet_slots import FleetSlots
from tasks.wave_approval import ask_wave, wave_plans

_PASSED = ("completed", "skipped")
_FINAL_RESULTS = {
    StateType.COMPLETED: "completed",
    StateType.FAILED: "failed",
    StateType.CRASHED: "crashed",
    StateType.CANCELLED: "cancelled",
}


class FleetFailed(PhasegateError):
    """The fleet did not complete: names each failed environment and why. Exit code 1."""

    def __init__(self, summary: FleetSummary) -> None:
        self.summary = summary
        why = summary.stopped or "some environments did not complete"
        super().__init__("; ".join([f"fleet failed: {why}", *summary.failure_lines()]))


def fleet_tag(flow_run_id: str) -> str:
    """The tag on every environment run a fleet run starts: finds them in the API."""
    return f"fleet-{flow_run_id}"


@dataclass
class _InFlight:
    """An environment holding a slot: its lease, its current run, the phases still to run."""

    config: EnvironmentConfig
    lease: UUID
    run: FlowRun
    phases_left: list[int]
    renewed: float = field(default_factory=time.monotonic)


class _Fleet:
    """One fleet run's state: outcomes by environment, slots in flight, failures so far."""

    def __init__(
        self,
        environments: list[EnvironmentConfig],
        phases: list[int],
        settings: FleetSettings,
        tag: str,
        wave_of: dict[str, str],
    ) -> None:
        self.phases, self.settings, self.tag = phases, settings, tag
        self.threshold = settings.error_threshold(len(environments))
        self.slots = FleetSlots(settings.concurrency_limit, settings.max_concurrency)
        self.outcomes = {
            c.name: EnvironmentOutcome(environment=c.name, tier=c.tier, wave=wave_of[c.name])
            for c in environments
        }
        self.deployments: dict[str, dict[int, str]] = {}
        self.stopped = ""

    @property
    def failures(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.result not in _PASSED + _OPEN)

    @property
    def too_many_errors(self) -> bool:
        return self.failures > self.threshold

    def deploy(self, config: EnvironmentConfig) -> None:
        """The environment's deployments (one per enabled phase), made or updated now."""
        made = deployments.deploy(str(config.source), self.settings.work_pool)
        self.deployments[config.name] = {item.phase: item.full_name for item in made}

    def run_wave_approved(self, name: str, members: list[EnvironmentConfig]) -> None:
        """`approve_per: wave`: phase by phase, one approval for the members that need one,
        asked before any of them starts; a member goes on to its next phase only if it
        completed the last one."""
        going = list(members)
        for phase in self.phases:
            batch = [c for c in going if phase in self.deployments[c.name]]
            asking = [c for c in batch if ApprovalPolicy.for_run(c).needs_approval(phase)]
            approvals: dict[str, WaveApproval] = {}
            if asking:
                try:
                    approvals = ask_wave(name, phase, wave_plans(asking, phase))
                except (ApprovalRejected, ApprovalExpired) as exc:
                    result = "rejected" if isinstance(exc, ApprovalRejected) else "expired"
                    for config in batch:
                        self.outcomes[config.name].result = result
                        self.outcomes[config.name].detail = str(exc)
                    self.stopped = str(exc)
                    return
            if batch:
                self.run_wave(name, batch, [phase], approvals)
            if self.stopped:
                return
            unfinished = {c.name for c in batch if self.outcomes[c.name].result != "completed"}
            going = [c for c in going if c.name not in unfinished]
        for config in members:
            self._skip_if_nothing_enabled(config)

    def run_wave(
        self,
        name: str,
        members: list[EnvironmentConfig],
        phases: list[int] | None = None,
        approvals: dict[str, WaveApproval] | None = None,
    ) -> None:
        """Start members as slots free up; return when every started one is final."""
        log = get_logger("fleet", wave=name)
        queue = list(members)
        inflight: dict[str, _InFlight] = {}
        while queue or inflight:
            for env_name in list(inflight):
                if self._poll(inflight[env_name]):
                    self.slots.release(inflight.pop(env_name).lease)
            if self.too_many_errors and queue:
                self.stopped = (
                    f"{self.failures} environments failed, more than fleet.max_errors allows "
                    f"({self.threshold}); {len(queue)} left unstarted"
                )
                log.warning("fleet.max_errors", failures=self.failures, threshold=self.threshold)
                queue.clear()
            while queue and len(inflight) < self.settings.max_concurrency:
                lease = self.slots.try_take()
                if lease is None:
                    break  # every slot is taken, perhaps by another fleet: wait for one
                config = queue.pop(0)
                approval = (approvals or {}).get(config.name)
                started = self._start(config, lease, phases or self.phases, approval)
                if started is None:
                    self.slots.release(lease)
                else:
                    inflight[config.name] = started
            if queue or inflight:
                time.sleep(self.settings.poll_seconds)

    def _start(
        self,
        config: EnvironmentConfig,
        lease: UUID,
        phases: list[int],
        approval: WaveApproval | None,
    ) -> _InFlight | None:
        enabled = self.deployments[config.name]
        phases = [p for p in phases if p in enabled]
        if not phases:
            self._skip_if_nothing_enabled(config)
            return None
        run = self._trigger(config, enabled[phases[0]], approval)
        return _InFlight(config=config, lease=lease, run=run, phases_left=phases[1:])

    def _skip_if_nothing_enabled(self, config: EnvironmentConfig) -> None:
        outcome = self.outcomes[config.name]
        if outcome.result == "not started" and not set(self.phases) & set(
            self.deployments[config.name]
        ):
            outcome.result = "skipped"
            outcome.detail = f"phases {self.phases} are not enabled (phases.enabled)"

    def _trigger(
        self, config: EnvironmentConfig, deployment: str, approval: WaveApproval | None = None
    ) -> FlowRun:
        run = run_deployment(
            deployment,
            timeout=0,
            as_subflow=False,
            tags=[environment_tag(config.name), self.tag],
            parameters={"wave_approval": approval.model_dump()} if approval else None,
        )
        outcome = self.outcomes[config.name]
        outcome.result = "running"
        outcome.flow_runs.append(str(run.id))
        get_logger("fleet", environment=config.name).info(
            "fleet.started", deployment=deployment, flow_run_id=str(run.id)
        )
        return run

    def _poll(self, item: _InFlight) -> bool:
        """Follow the environment's run; True once the environment is done (slot to free)."""
        if time.monotonic() - item.renewed > self.slots.lease_seconds / 3:
            self.slots.renew(item.lease)
            item.renewed = time.monotonic()
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(item.run.id)
        outcome = self.outcomes[item.config.name]
        state = run.state
        if state is None or not state.is_final():
            outcome.result = "awaiting approval" if state and state.is_paused() else "running"
            return False
        rows = _phase_rows(run.id, item.config.name)
        for row in rows:
            outcome.record_phase(row)
        result = _FINAL_RESULTS.get(state.type, "failed")
        if result == "failed" and rows and rows[-1].status not in _PASSED:
            result = rows[-1].status  # rolled back, rejected, expired, refused
        if result != "completed":
            outcome.result = result
            outcome.detail = outcome.detail or (state.message or state.name)
            get_logger("fleet", environment=item.config.name).warning(
                "fleet.environment_failed", result=result, detail=outcome.detail
            )
            return True
        if item.phases_left:
            deployment = self.deployments[item.config.name][item.phases_left.pop(0)]
            item.run = self._trigger(item.config, deployment)
            return False
        outcome.result = "completed"
        return True


_OPEN = ("not started", "running", "awaiting approval")


def _phase_rows(run_id: UUID, environment: str) -> list[PhaseRow]:
    """The phase outcomes the environment's run published (none if it crashed first)."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[outcomes_key(environment)]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            )
        )
    if not artifacts:
        return []
    data = artifacts[0].data
    table = json.loads(data) if isinstance(data, str) else data
    return [PhaseRow.model_validate(row) for row in table]


@flow(name="fleet", flow_run_name="fleet: {selectors}")
def fleet(
    selectors: list[str],
    phases: list[int],
    settings: FleetSettings,
    directories: list[str] | None = None,
) -> FleetSummary:
    """Migrate every environment `selectors` match, wave by wave, under `settings`' limits."""
    environments = select_environments(selectors, [Path(d) for d in directories or []] or None)
    waves = waves_of(environments, settings.waves)
    wave_of = {c.name: name for name, members in waves for c in members}
    context = FlowRunContext.get()
    run_id = str(context.flow_run.id) if context and context.flow_run else "local"
    state = _Fleet(environments, phases, settings, fleet_tag(run_id), wave_of)
    log = get_logger("fleet")
    log.info("fleet.selected", environments=len(environments), waves=[n for n, _ in waves])
    for config in environments:
        state.deploy(config)
    for index, (name, members) in enumerate(waves):
        if settings.approve_per == "wave":
            state.run_wave_approved(name, members)
        else:
            state.run_wave(name, members)
        if state.stopped:
            break
        failed = [m.name for m in members if state.outcomes[m.name].result not in _PASSED]
        later = [n for n, _ in waves[index + 1 :]]
        if failed and later:
            state.stopped = (
                f"wave {name} did not pass ({', '.join(failed)}), so wave {later[0]} did not start"
            )
            break
        if later and settings.bake_minutes:
            log.info("fleet.bake", wave=name, minutes=settings.bake_minutes, next=later[0])
            time.sleep(settings.bake_minutes * 60)
    summary = FleetSummary(
        selectors=selectors,
        phases=phases,
        max_concurrency=settings.max_concurrency,
        error_threshold=state.threshold,
        environments=list(state.outcomes.values()),
        stopped=state.stopped,
    )
    _publish(summary)
    if not summary.succeeded:
        raise FleetFailed(summary)
    return summary


def _publish(summary: FleetSummary) -> None:
    """The summary as the fleet run's artifacts: markdown for people, a table for `status`."""
    create_markdown_artifact(markdown=summary.markdown(), key="fleet-summary")
    create_table_artifact(
        table=[e.model_dump(mode="json") for e in summary.environments],
        key="fleet-environments",
        description=f"monthly saving {summary.monthly_saving:.2f}; stopped: {summary.stopped}",
    )
