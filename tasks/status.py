"""`phasegate status ENV`: what the Prefect API knows about an environment's runs.

Everything here is read from the API (PREFECT_API_URL), never from local state, so the answer
is the same on any machine that points at the same server:

- recent runs: flow runs carrying the environment's tag (`environment_tag`), newest first;
- the current phase and step: for the newest run that is Running or Paused (a top-level run
  if there is one), its latest task run named after a step id, in the run itself or in any
  of its subflow runs; the phase is that step's;
- pending approvals: the environment's runs that are Paused, with the command that answers;
- the last gate result: the newest artifact under the environment's gate key, as
  `tasks.gates.health_gate` publishes it (`phasegate.gates.render_markdown`).
"""

import re
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
    TaskRunFilterName,
)
from prefect.client.schemas.objects import Artifact, FlowRun, StateType
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort, TaskRunSort
from prefect.settings import PREFECT_API_URL

from phasegate.config import EnvironmentConfig, load_environment
from phasegate.errors import PhasegateError
from phasegate.ledger import Ledger
from phasegate.status import (
    DriftSummary,
    GateSummary,
    PendingApproval,
    RunSummary,
    StatusReport,
    environment_tag,
)
from tasks.gates import artifact_key
from tasks.registry import PHASE_NAMES, STEPS

RECENT_RUNS = 10
SUBFLOW_DEPTH = 5  # subflows of subflows...; phasegate nests two levels at most today

_GATE_HEADING = re.compile(r"^# Health gate of `(?P<environment>.*)`: \*\*(?P<verdict>\w+)\*\*$")
_GATE_DESCRIPTION = re.compile(r"^Health gate of .*: (?P<verdict>\w+)$")


def environment_status(env: str) -> StatusReport:
    """The status of ENV (a name or a path) as the Prefect API reports it.

    Raises ConfigError for a bad ENV and PhasegateError when the API cannot be reached.
    """
    config = load_environment(env)
    tag = environment_tag(config.name)
    try:
        with get_client(sync_client=True) as client:
            report = _read_status(client, config.name, tag)
    except httpx.HTTPStatusError as exc:
        raise PhasegateError(
            f"{config.name}: the Prefect API at {_api_url()} (PREFECT_API_URL) answered "
            f"{exc.response.status_code} to {exc.request.method} {exc.request.url.path}; "
            "is PREFECT_API_URL the server's API (ending in /api)?"
        ) from None
    except httpx.HTTPError as exc:
        raise PhasegateError(
            f"{config.name}: cannot reach the Prefect API at {_api_url()} (PREFECT_API_URL): "
            f"{exc or type(exc).__name__}; start the server or set PREFECT_API_URL to it"
        ) from None
    report.drift = _drift(config)
    return report


def _drift(config: EnvironmentConfig) -> list[DriftSummary]:
    """Steps whose newest verdict in the ledger is drift."""
    ledger = Ledger(config)
    found = []
    for step_id, step in STEPS.items():
        record = ledger.last_drift(step.phase, step_id)
        if record is not None:
            found.append(
                DriftSummary(
                    step=step_id, at=record.finished_at, detail=record.detail, diff=record.diff
                )
            )
    return found


def _api_url() -> str:
    return PREFECT_API_URL.value() or "the temporary local API (PREFECT_API_URL is not set)"


def _read_status(client: SyncPrefectClient, environment: str, tag: str) -> StatusReport:
    tagged = FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
    recent = client.read_flow_runs(
        flow_run_filter=tagged, sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=RECENT_RUNS
    )
    active = client.read_flow_runs(
        flow_run_filter=_in_states(tag, StateType.RUNNING, StateType.PAUSED),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=50,
    )
    paused = [run for run in active if run.state_type == StateType.PAUSED]
    flows = _flow_names(client, [*recent, *active])
    report = StatusReport(
        environment=environment,
        recent_runs=[_summary(run, flows) for run in recent],
        pending_approvals=[_pending(run, flows) for run in paused],
    )
    if active:
        # A subflow (a phase's rollback, say) carries the tag too; its parent is the run.
        current = next((run for run in active if run.parent_task_run_id is None), active[0])
        report.current_run = _summary(current, flows)
        step = _latest_step(client, current.id)
        if step is not None:
            report.current_step, report.current_phase = step, STEPS[step].phase
            report.current_phase_name = PHASE_NAMES.get(report.current_phase)
    gate = _last_gate(client, artifact_key(environment))
    if gate is not None:
        report.gate = gate
        report.last_gate = gate.summary
    return report


def _in_states(tag: str, *types: StateType) -> FlowRunFilter:
    return FlowRunFilter(
        tags=FlowRunFilterTags(all_=[tag]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(types))),
    )


def _flow_names(client: SyncPrefectClient, runs: Iterable[FlowRun]) -> dict[UUID, str]:
    ids = list({run.flow_id for run in runs})
    if not ids:
        return {}
    flows = client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=ids)), limit=len(ids))
    return {flow.id: flow.name for flow in flows}


def _summary(run: FlowRun, flows: dict[UUID, str]) -> RunSummary:
    return RunSummary(
        id=str(run.id),
        name=run.name,
        flow=flows.get(run.flow_id, str(run.flow_id)),
        state=run.state_name or (run.state.name if run.state else "unknown"),
        started=run.start_time,
    )


def _pending(run: FlowRun, flows: dict[UUID, str]) -> PendingApproval:
    details = run.state.state_details if run.state else None
    return PendingApproval(
        **_summary(run, flows).model_dump(),
        paused_since=run.state.timestamp if run.state else None,
        asks_for_input=bool(details and details.run_input_keyset),
        timeout_at=details.pause_timeout if details else None,
    )


def _descendants(client: SyncPrefectClient, run_id: UUID) -> list[UUID]:
    """`run_id` and the ids of its subflow runs, their subflow runs, and so on."""
    found, frontier = [run_id], [run_id]
    for _ in range(SUBFLOW_DEPTH):
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier)
            )
        )
        frontier = [child.id for child in children if child.id not in found]
        if not frontier:
            break
        found += frontier
    return found


def _latest_step(client: SyncPrefectClient, run_id: UUID) -> str | None:
    """The step id of the latest step task run of `run_id` or its subflow runs, if any."""
    task_runs = client.read_task_runs(
        task_run_filter=TaskRunFilter(
            flow_run_id=TaskRunFilterFlowRunId(any_=_descendants(client, run_id)),
            name=TaskRunFilterName(any_=list(STEPS)),
        ),
        sort=TaskRunSort.EXPECTED_START_TIME_DESC,
        limit=1,
    )
    return task_runs[0].name if task_runs else None


def _last_gate(client: SyncPrefectClient, key: str) -> GateSummary | None:
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
        sort=ArtifactSort.CREATED_DESC,
        limit=1,
    )
    return gate_summary(artifacts[0]) if artifacts else None


def gate_summary(artifact: Artifact) -> GateSummary:
    """The verdict and reason of a gate artifact, read back from its markdown.

    The markdown is `phasegate.gates.render_markdown`'s: a heading with the verdict, the
    reason, then a line counting rounds, failures and inconclusive measurements.
    """
    text = artifact.data if isinstance(artifact.data, str) else ""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    heading = _GATE_HEADING.match(paragraphs[0]) if paragraphs else None
    at = artifact.created
    if heading:
        reason = _uncell(paragraphs[1]) if len(paragraphs) > 1 else ""
        rounds = paragraphs[2] if len(paragraphs) > 2 and "round(s)" in paragraphs[2] else ""
        rounds = rounds.removesuffix(" No data is inconclusive, never a pass.")
        return _gate(heading["verdict"], reason, rounds, at, artifact)
    described = _GATE_DESCRIPTION.match(artifact.description or "")
    if described:
        return _gate(described["verdict"], "", "", at, artifact)
    return _gate(
        "unknown", "the gate artifact is not in the form phasegate writes", "", at, artifact
    )


def _gate(
    verdict: str, reason: str, rounds: str, at: datetime | None, artifact: Artifact
) -> GateSummary:
    verdict = verdict.lower()
    summary = verdict.upper() + (f": {reason}" if reason else "")
    return GateSummary(
        verdict=verdict,
        reason=reason,
        rounds=rounds,
        at=at,
        flow_run_id=str(artifact.flow_run_id) if artifact.flow_run_id else None,
        summary=summary,
    )


def _uncell(text: str) -> str:
    return text.replace("\\|", "|")
