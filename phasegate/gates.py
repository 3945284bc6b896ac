"""Health gates: checks evaluated every interval for count rounds, in the Argo Rollouts style.

A gate discovers the environment once (and its second region: phasegate.gate_regions), then
runs a round of checks every `interval_seconds`, `count` times. Each check is one question
about one resource (the 5xx ratio of one ALB, the CPU of one database) and each round gives
it one measurement: pass, fail or inconclusive.

What a round measures is phasegate.gate_checks (metrics from CloudWatch in one GetMetricData
call per round, statuses from describe calls, alarms by their tags); how the verdict reads is
phasegate.gate_render; the results themselves are phasegate.gate_results. This module decides.
The public names of all three stay importable from here (`__all__`).

**No data is inconclusive, never a pass.** A metric with no datapoint in the window, a request
count of zero (a ratio of nothing), or a CloudWatch error all make the check inconclusive.

Deciding the gate, as Argo Rollouts does per metric of an AnalysisTemplate: every check keeps
its own count of failed and of inconclusive measurements. The gate fails as soon as one check
has more failures than `failure_limit` or more inconclusives than `inconclusive_limit` (then
no further round runs). Otherwise it passes after `count` rounds, but only if every check
passed at least once: a check that was never conclusive cannot let a gate pass, whatever the
limits say. The limits are per check so that a larger environment (more resources, so more
checks) is not judged more harshly than a small one.

This module knows nothing of Prefect: tasks/gates.py wraps it in a task that logs each check
and publishes `render_markdown(result)` as an artifact; `phasegate gate` runs it directly.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig
from phasegate.gate_checks import GateChecks, load_balancer_dimension, target_group_dimension
from phasegate.gate_regions import SecondRegionChecks
from phasegate.gate_render import gate_table, render_markdown
from phasegate.gate_results import CheckResult, GateFailed, GateResult, GateRound, fmt_value
from phasegate.inventory import discover

__all__ = [
    "CheckResult",
    "GateFailed",
    "GateResult",
    "GateRound",
    "HealthGate",
    "gate_table",
    "load_balancer_dimension",
    "render_markdown",
    "target_group_dimension",
]


@dataclass
class _Tally:
    passes: int = 0
    failures: int = 0
    inconclusives: int = 0
    last_failure: CheckResult | None = None
    last_inconclusive: CheckResult | None = None


RoundCallback = Callable[[GateRound], None]


class HealthGate:
    """The health gate of one environment, configured by its `gates` section."""

    def __init__(
        self,
        config: EnvironmentConfig,
        clients: AwsClients | None = None,
        *,
        on_round: RoundCallback | None = None,
    ) -> None:
        self.config = config
        self.gates = config.gates
        self.clients = clients or AwsClients(config.aws)
        self.on_round = on_round
        self.checks = GateChecks(config, self.clients)

    # -- the gate ---------------------------------------------------------------------------

    def evaluate(
        self, now: datetime | None = None, sleep: Callable[[float], Any] = time.sleep
    ) -> GateResult:
        """Discover, then run up to `count` rounds `interval_seconds` apart; the verdict.

        `now` pins the clock for tests: round N reads the window ending at
        now + (N-1) * interval. Without it each round reads up to the wall-clock time.
        """
        started = datetime.now(UTC)
        inventory = discover(self.config, self.clients)
        serving = self.checks.serving_target_groups(inventory)
        standby = SecondRegionChecks.discover(self.config, self.clients)
        interval = self.gates.interval_seconds
        base = _utc(now) if now is not None else None
        tallies: dict[tuple[str, str], _Tally] = {}
        rounds: list[GateRound] = []
        breaches: list[str] = []
        for number in range(1, self.gates.count + 1):
            at = (
                base + timedelta(seconds=interval * (number - 1))
                if base is not None
                else datetime.now(UTC)
            )
            checks = self.checks.measure(inventory, serving, at)
            if standby is not None:
                checks += standby.measure(at)
            current = GateRound(number=number, at=at, checks=checks)
            rounds.append(current)
            if self.on_round is not None:
                self.on_round(current)
            for check in current.checks:
                tally = tallies.setdefault((check.name, check.resource), _Tally())
                if check.status == "pass":
                    tally.passes += 1
                elif check.status == "fail":
                    tally.failures += 1
                    tally.last_failure = check
                else:
                    tally.inconclusives += 1
                    tally.last_inconclusive = check
            breaches = self._breaches(tallies)
            if breaches:
                break
            if number < self.gates.count:
                sleep(interval)

        if breaches:
            verdict, reason = "fail", "; ".join(breaches)
        elif not tallies:
            verdict, reason = "fail", "there was nothing to check"
        elif never := [key for key, t in tallies.items() if t.passes == 0]:
            verdict = "fail"
            reason = "; ".join(
                f"{name} on {resource} never passed in {len(rounds)} round(s) "
                f"(an inconclusive check is never a pass)"
                for name, resource in never
            )
        else:
            verdict = "pass"
            tolerated = sum(t.failures + t.inconclusives for t in tallies.values())
            reason = f"{len(tallies)} checks passed over {len(rounds)} round(s)" + (
                f", {tolerated} failed or inconclusive measurement(s) within the limits"
                if tolerated
                else ""
            )
        return GateResult(
            environment=self.config.name,
            verdict=verdict,
            rounds=rounds,
            failures=sum(t.failures for t in tallies.values()),
            inconclusives=sum(t.inconclusives for t in tallies.values()),
            reason=reason,
            count=self.gates.count,
            started_at=started,
            finished_at=datetime.now(UTC),
        )

    def _breaches(self, tallies: dict[tuple[str, str], _Tally]) -> list[str]:
        """A sentence per check over a limit, failures first; empty while the gate may go on."""
        failed, inconclusive = [], []
        for (name, resource), t in tallies.items():
            if t.failures > self.gates.failure_limit and (last := t.last_failure):
                detail = f"; {last.detail}" if last.detail else ""
                failed.append(
                    f"{name} on {resource} failed {t.failures} time(s), above failure_limit "
                    f"{self.gates.failure_limit} ({fmt_value(last.value)} vs {last.threshold}"
                    f"{detail})"
                )
            if t.inconclusives > self.gates.inconclusive_limit and (last := t.last_inconclusive):
                inconclusive.append(
                    f"{name} on {resource} was inconclusive {t.inconclusives} time(s), above "
                    f"inconclusive_limit {self.gates.inconclusive_limit}; {last.detail}"
                )
        return failed + inconclusive


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
