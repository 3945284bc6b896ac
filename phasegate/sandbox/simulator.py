"""The workload simulator: the CloudWatch metrics a running platform would emit, for moto.

moto emits no AWS/* metrics at all, so without this every health gate would read "no data",
which is inconclusive and never a pass. The simulator publishes, for each sandbox environment,
the gate metrics of DESIGN.md on AWS's own namespaces, metric names and dimensions, so gates
read them exactly as they would read real CloudWatch and product code never asks whether it
runs against the sandbox.

It re-discovers every environment on each tick (phasegate.inventory.discover), so the metrics
follow the migration: once the NAT gateways are gone there is no NAT metric, and after the
Graviton switch the healthy host count follows the new compute (running ECS tasks, or InService
instances of an Auto Scaling group behind the target group).

Time is wall-clock time in whole minutes: each environment gets exactly one datapoint per
metric per minute, published on the first tick that reaches that minute, so Sum statistics are
per-minute totals as on AWS. An environment seen for the first time gets its last hour
backfilled, so a gate has history to read at once. Values are healthy with a mild jitter that
is a pure function of (environment, metric, minute): a re-run publishes the same numbers.

A second region (`regions.secondary`) is published as an environment of its own, `ENV@REGION`,
as a standby behaves on AWS (phasegate.sandbox.standby_traffic): its ALB serves only Route 53's
health checks (a few requests a minute, 2xx while its targets are healthy, none before
regions.expand.dns has made a check), its target groups publish nothing before compute is
registered with them, and it is never backfilled: what regions.expand makes starts now, so its
series start at the minute they first appear. Since the steps make its parts within seconds of
each other and a gate follows at once, a standby is discovered on every tick, and a series that
appears within a minute already published gets that minute at once (one discovery and one
ListHealthChecks per standby per tick).

Faults (`faults.json` under the sandbox directory, read on every tick) stand in for a
misbehaving service. Each entry maps an environment name to a kind, either as a bare string
(the original format) or as {"kind": KIND, "after": STEP}; `after` (a step id, or null) keeps
the environment healthy until that step has finished, i.e. until its ledger has a checkpoint
(phasegate.ledger.Ledger(config).checkpoint(phase, step) is a Record, applied or unchanged),
the way a bad deploy only breaks the service once it has gone out. The fault is in force for
as long as that checkpoint stands: a rollback appended to the ledger ends it, and with it the
fault's cause.

- ``5xx``: about 20% of requests answer 5xx;
- ``latency``: target response time 2.5 s;
- ``nodata``: nothing more is published for the environment (those minutes stay empty; the
  minutes already published stay too, so only a gate whose lookback has moved past them sees
  no data);
- ``unhealthy``: HealthyHostCount 0 (UnHealthyHostCount takes the hosts).
- ``elb503``: no target is healthy, so the ALB answers every request 503 itself
  (HTTPCode_ELB_5XX_Count; target metrics see none of it), as after a move that cut the
  targets off from their health checks.

A fault must show within seconds, not from the next minute on: a gate reads the last
`gates.lookback_minutes` (of the environment's config), and one bad minute among healthy ones
is diluted or, mid-minute, not there at all. A tick that reaches a new minute publishes that
minute with the fault in force, as always. A tick within a minute already published catches the
gate's window up instead: it publishes the fault into the minutes of that window it published
without it (CloudWatch adds datapoints of the same minute together): for ``5xx`` extra
HTTPCode_Target_5XX_Count, so each minute's ratio is the fault's; for ``latency`` extra
TargetResponseTime samples, so each minute's Average is 2.5 s; for ``unhealthy`` a
HealthyHostCount 0 datapoint at the latest minute (a gate reads its Minimum). So a fault shows
on the simulator's next tick, or the one after when the next one opens a new minute. A real
service would take the window's length to degrade that far; the sandbox compresses it so that
a gate, a test or a demo need not wait minutes. Each minute takes a kind's effect once, however
often the fault is cleared and set again. Gates know nothing of this: they read CloudWatch as
always.

A tick with no minute due and no fault to catch up on makes no AWS call at all (it reads the
faults file, lists the environments and, for an `after` fault, looks for the step's
checkpoint), so ticking every half second costs a few milliseconds.
"""

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from phasegate import entrypoints
from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.errors import ConfigError
from phasegate.home import generated_environments_dir
from phasegate.inventory import Inventory, LoadBalancer, discover
from phasegate.retry import RetryPolicy
from phasegate.sandbox.server import faults_path, write_text_atomic
from phasegate.sandbox.standby_traffic import (
    SeriesKey,
    health_check_requests,
    is_standby,
    new_series,
    series_key,
)
from phasegate.secondary_region import secondary_config

if TYPE_CHECKING:
    from phasegate.ledger import Ledger

log = structlog.get_logger("phasegate.sandbox")

FAULT_KINDS = ("5xx", "latency", "nodata", "unhealthy", "elb503")

REQUESTS_PER_MINUTE = 1000
HEALTHY_LATENCY_SECONDS = 0.12
FAULT_LATENCY_SECONDS = 2.5
FAULT_5XX_RATIO = 0.2
NAT_BYTES_OUT_PER_MINUTE = 50_000_000
NAT_BYTES_IN_PER_MINUTE = 200_000_000

# AWS accepts up to 1000 datums per PutMetricData call; stay well under its 1 MB body limit.
_BATCH = 500

# A tick must never hang on a sandbox that is shutting down: fail fast, try again next tick.
_SIMULATOR_RETRIES = RetryPolicy(max_attempts=2, max_seconds=5.0, initial_wait=0.1, max_wait=1.0)

EnvironmentSource = Callable[[], list[EnvironmentConfig]]
Datum = dict[str, Any]

_last_warning: dict[str, str] = {}  # subject -> the last problem logged about it


def _warn(subject: str, event: str, problem: str, **context: Any) -> None:
    """Log a problem with `subject` once, not on every tick; again only when it changes."""
    if _last_warning.get(subject) != problem:
        _last_warning[subject] = problem
        log.warning(event, problem=problem, **context)


def _recovered(subject: str) -> None:
    _last_warning.pop(subject, None)


@dataclass(frozen=True)
class Fault:
    """One environment's entry in the faults file: what goes wrong, and after which step."""

    kind: str
    after: str | None = None  # a step id: healthy until that step's checkpoint exists

    def to_json(self) -> str | dict[str, str]:
        """The file's form: the bare kind without `after` (the original format), else an object."""
        return self.kind if self.after is None else {"kind": self.kind, "after": self.after}


def _parse_fault(value: object) -> Fault | str:
    """The Fault an entry of the file describes, or why it is not one."""
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, dict):
        return f"{value!r} is neither a kind nor an object"
    kind, after = value.get("kind"), value.get("after")
    if kind not in FAULT_KINDS:
        return f"unknown kind {kind!r}"
    if after is not None and (not isinstance(after, str) or not after):
        return f"'after' must be a step id or null, got {after!r}"
    unknown = sorted(set(value) - {"kind", "after"})
    if unknown:
        return f"unknown field(s) {', '.join(unknown)}"
    return Fault(kind, after)


def read_fault_specs(path: Path | None = None) -> dict[str, Fault]:
    """Every fault in the file: environment name -> Fault. A missing or broken file means none;
    a broken entry is logged (once) and ignored, the others still count."""
    path = path or faults_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        data = exc
    if not isinstance(data, dict):
        problem = str(data) if isinstance(data, Exception) else "not a JSON object"
        _warn(str(path), "faults file ignored", problem, path=str(path))
        return {}
    _recovered(str(path))
    faults: dict[str, Fault] = {}
    problems: dict[str, str] = {}
    for env, value in data.items():
        parsed = _parse_fault(value)
        if isinstance(parsed, Fault):
            faults[str(env)] = parsed
        else:
            problems[str(env)] = parsed
    if problems:
        _warn(f"{path}:entries", "faults ignored", str(problems), path=str(path))
    else:
        _recovered(f"{path}:entries")
    return faults


def read_faults(path: Path | None = None) -> dict[str, str]:
    """The faults in the file: environment name -> kind (see read_fault_specs for `after`)."""
    return {env: fault.kind for env, fault in read_fault_specs(path).items()}


def set_fault(
    environment: str, kind: str | None, path: Path | None = None, *, after: str | None = None
) -> None:
    """Inject `kind` into `environment` (from the moment step `after` has finished, if given),
    or clear its fault when `kind` is None.

    `after` is not checked here (phasegate never imports the steps; the CLI checks it). The
    file is replaced atomically because the simulator may read it at any moment.
    """
    if kind is not None and kind not in FAULT_KINDS:
        raise ConfigError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
    if kind is None and after is not None:
        raise ConfigError("a fault is cleared whole: 'after' goes with a kind only")
    path = path or faults_path()
    faults = read_fault_specs(path)
    if kind is None:
        faults.pop(environment, None)
    else:
        faults[environment] = Fault(kind, after)
    data = {env: fault.to_json() for env, fault in faults.items()}
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def with_second_regions(configs: Iterable[EnvironmentConfig]) -> Iterator[EnvironmentConfig]:
    """Each environment, then its second region (`regions.secondary`) as an environment of its
    own, named ENV@REGION: discovered there by its tags and published to that region's
    CloudWatch. Faults are set per environment name, so they never reach the standby."""
    for config in configs:
        yield config
        secondary = secondary_config(config)
        if secondary is not None:
            yield secondary.model_copy(update={"name": f"{config.name}@{secondary.aws.region}"})


def sandbox_environments(endpoint: str) -> list[EnvironmentConfig]:
    """The environment files `phasegate sandbox up|seed` wrote for the sandbox at `endpoint`.

    Files pointing elsewhere (a stale sandbox's port) are left alone rather than discovered
    against a server that is gone.
    """
    found = []
    for path in sorted(generated_environments_dir().glob("*.yaml")):
        try:
            config = parse_environment(path)
        except ConfigError as exc:
            _warn(str(path), "environment file skipped", str(exc), path=str(path))
            continue
        _recovered(str(path))
        if (config.aws.endpoint_url or "").rstrip("/") == endpoint.rstrip("/"):
            found.append(config)
    return found


def _unit(*parts: object) -> float:
    """A number in [0, 1) that depends only on `parts`: jitter that is the same on every run."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _between(low: float, high: float, *parts: object) -> float:
    return low + (high - low) * _unit(*parts)


def _split(total: int, parts: int) -> list[int]:
    """`total` shared as evenly as integers allow among `parts` (parts >= 1)."""
    share, rest = divmod(total, parts)
    return [share + (1 if i < rest else 0) for i in range(parts)]


def _dims(**dimensions: str) -> list[dict[str, str]]:
    return [{"Name": k, "Value": v} for k, v in dimensions.items()]


def _datum(
    name: str, value: float, unit: str, minute: datetime, **dimensions: str
) -> dict[str, Any]:
    return {
        "MetricName": name,
        "Dimensions": _dims(**dimensions),
        "Timestamp": minute,
        "Value": value,
        "Unit": unit,
    }


def _elb_dimension(arn: str) -> str:
    """The dimension value ELB metrics use for a load balancer or a target group ARN.

    'app/NAME/ID' from '...:loadbalancer/app/NAME/ID', but 'targetgroup/NAME/ID' from
    '...:targetgroup/NAME/ID': AWS keeps the resource type only for target groups.
    """
    return arn.split(":", 5)[5].removeprefix("loadbalancer/")


class WorkloadSimulator:
    """Publishes healthy (or faulted) gate metrics for every sandbox environment, per minute.

    `environments` is called on every tick, so environments seeded later are picked up and
    removed ones are dropped. Call `tick(now)` directly (tests do), or `start()` a background
    thread that ticks every `tick_seconds`.
    """

    def __init__(
        self,
        environments: EnvironmentSource,
        *,
        tick_seconds: float = 10.0,
        backfill_minutes: int = 60,
        faults_file: Path | None = None,
    ) -> None:
        if tick_seconds <= 0:
            raise ConfigError(f"tick_seconds must be positive, got {tick_seconds}")
        if backfill_minutes < 1:
            raise ConfigError(f"backfill_minutes must be at least 1, got {backfill_minutes}")
        self.environments = environments
        self.tick_seconds = tick_seconds
        self.backfill_minutes = backfill_minutes
        self.faults_file = faults_file
        self._published: dict[str, datetime] = {}  # environment -> last minute published
        # environment -> minute -> the fault kinds that minute already shows, for the minutes
        # a gate may still read (see `_catch_up`)
        self._shown: dict[str, dict[datetime, set[str]]] = {}
        self._in_force: dict[str, str | None] = {}  # environment -> fault of the last tick
        self._series: dict[str, set[SeriesKey]] = {}  # standby -> series of its latest minute
        self._clients: dict[str, AwsClients] = {}
        self._ledgers: dict[tuple[str, str | None], Ledger] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one tick ---------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> dict[str, int]:
        """Publish every not-yet-published minute up to `now`'s, and a fault just come into
        force into the gate's window; datapoints sent per environment.

        One environment failing (mid-migration, say) is logged and retried on the next tick;
        it never stops the others.
        """
        minute = (now or datetime.now(UTC)).astimezone(UTC).replace(second=0, microsecond=0)
        faults = read_fault_specs(self.faults_file)
        sent: dict[str, int] = {}
        for config in with_second_regions(self.environments()):
            try:
                fault = self._fault_in_force(config, faults.get(config.name))
                sent[config.name] = self._tick_environment(config, minute, fault)
            except Exception as exc:  # discovery or AWS trouble in one env must not stop the rest
                problem = f"{type(exc).__name__}: {exc}"
                _warn(
                    f"env:{config.name}", "simulator tick failed", problem, environment=config.name
                )
                continue
            _recovered(f"env:{config.name}")
        return sent

    # -- which fault is in force ------------------------------------------------------------

    def _fault_in_force(self, config: EnvironmentConfig, fault: Fault | None) -> str | None:
        """The kind in force for the environment now: None without a fault, and while an
        `after` fault waits for its step's checkpoint. Logs when that changes."""
        kind = None
        if fault is not None and (fault.after is None or self._step_finished(config, fault.after)):
            kind = fault.kind
        previous = self._in_force.get(config.name)
        if kind != previous:
            if kind is not None:
                after = fault.after if fault else None
                log.info("fault in force", environment=config.name, kind=kind, after=after)
            else:
                log.info("fault no longer in force", environment=config.name, kind=previous)
        self._in_force[config.name] = kind
        return kind

    def _step_finished(self, config: EnvironmentConfig, step: str) -> bool:
        """True when `step` has a checkpoint in the environment's ledger.

        The step's phase comes from tasks.registry, loaded by name (phasegate never imports
        the steps); an unknown step or unreadable storage is logged and counts as not finished,
        so the environment stays healthy rather than failing for a reason nobody asked for.
        """
        subject = f"after:{config.name}:{step}"
        try:
            steps = entrypoints.load("tasks.registry:STEPS")
            if step not in steps:
                raise ConfigError(f"unknown step {step!r}; known: {', '.join(sorted(steps))}")
            record = self._ledger_for(config).checkpoint(steps[step].phase, step)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
            event = "fault waits: cannot tell whether its step finished"
            _warn(subject, event, problem, environment=config.name, step=step)
            return False
        _recovered(subject)
        return record is not None

    def _ledger_for(self, config: EnvironmentConfig) -> "Ledger":
        from phasegate.ledger import Ledger  # Prefect: imported only when needed

        key = (config.name, config.executor.result_storage)
        if key not in self._ledgers:
            self._ledgers[key] = Ledger(config)
        return self._ledgers[key]

    # -- publishing -------------------------------------------------------------------------

    def _tick_environment(
        self, config: EnvironmentConfig, minute: datetime, fault: str | None
    ) -> int:
        name = config.name
        standby = is_standby(config)
        minutes = list(self._due_minutes(name, minute, backfill=not standby))
        window_start = minute - timedelta(minutes=config.gates.lookback_minutes - 1)
        shown = self._shown.setdefault(name, {})
        for old in [m for m in shown if m < window_start]:
            del shown[old]
        if fault == "nodata":
            if minutes:
                self._published[name] = minute  # those minutes stay silent, even once cleared
            return 0
        behind = _catch_up(shown, fault, new_minute=bool(minutes))
        if not minutes and not behind and not standby:
            return 0
        clients = self._clients_for(config)
        inventory = discover(config, clients)
        traffic = health_check_requests(clients, inventory) if standby else None
        data: dict[str, list[Datum]] = {}
        if fault is not None and behind:
            data["AWS/ApplicationELB"] = [
                d
                for m in behind
                for lb in inventory.load_balancers
                for d in _fault_burst(inventory, lb, m, fault)
            ]
        for m in minutes:
            for namespace, datums in self.datapoints(inventory, m, fault, traffic).items():
                data.setdefault(namespace, []).extend(datums)
        if standby and not minutes:  # what regions.expand made since this minute was published
            now_data = self.datapoints(inventory, minute, fault, traffic)
            data = new_series(now_data, self._series.get(name, set()))
        if not data and name not in self._published:
            return 0  # nothing there yet (a second region before regions.expand): backfill later
        for namespace, datums in data.items():
            for i in range(0, len(datums), _BATCH):
                clients.cloudwatch.put_metric_data(
                    Namespace=namespace, MetricData=datums[i : i + _BATCH]
                )
        sent = sum(len(d) for d in data.values())
        if name not in self._published:
            log.info(
                "environment first published",
                environment=name,
                minutes=len(minutes),
                datapoints=sent,
            )
        if standby:
            latest = {series_key(ns, d) for ns, ds in data.items() for d in ds}
            self._series[name] = latest | (set() if minutes else self._series.get(name, set()))
        if fault is not None and behind:
            log.info(
                "fault published into the gate window",
                environment=name,
                kind=fault,
                minutes=len(behind),
            )
            for m in behind:
                shown[m].add(fault)
        for m in minutes:
            if m >= window_start:
                shown[m] = {fault} if fault else set()
        if minutes:
            self._published[name] = minute
        return sent

    def _due_minutes(
        self, environment: str, minute: datetime, *, backfill: bool = True
    ) -> Iterator[datetime]:
        """Minutes after the last one published, at most the backfill window (without
        `backfill`, from `minute` on), up to `minute`."""
        earliest = minute - timedelta(minutes=self.backfill_minutes - 1 if backfill else 0)
        last = self._published.get(environment)
        current = earliest if last is None else max(earliest, last + timedelta(minutes=1))
        while current <= minute:
            yield current
            current += timedelta(minutes=1)

    def _clients_for(self, config: EnvironmentConfig) -> AwsClients:
        key = config.aws.model_dump_json()
        if key not in self._clients:
            self._clients[key] = AwsClients(config.aws, policy=_SIMULATOR_RETRIES)
        return self._clients[key]

    # -- what a minute looks like -----------------------------------------------------------

    def datapoints(
        self,
        inventory: Inventory,
        minute: datetime,
        fault: str | None = None,
        traffic: dict[str, int] | None = None,
    ) -> dict[str, list[Datum]]:
        """The datums of one minute for one environment, by namespace (pure: no AWS calls).

        `traffic` is a standby's: per ALB ARN, the requests of Route 53's health checks
        (phasegate.sandbox.standby_traffic); None is the primary's workload.
        """
        env = inventory.environment
        data: dict[str, list[Datum]] = {
            "AWS/ApplicationELB": [
                d
                for lb in inventory.load_balancers
                for d in _alb(
                    inventory, lb, minute, fault, None if traffic is None else traffic[lb.arn]
                )
            ],
            "AWS/RDS": [],
            "AWS/ElastiCache": [],
            "AWS/NATGateway": [],
            "AWS/ECS": [],
        }
        for db in inventory.databases:
            key = (env, db.identifier, minute)
            data["AWS/RDS"] += [
                _datum(
                    "CPUUtilization",
                    _between(25, 40, "rds-cpu", *key),
                    "Percent",
                    minute,
                    DBInstanceIdentifier=db.identifier,
                ),
                _datum(
                    "DatabaseConnections",
                    round(_between(8, 14, "rds-conn", *key)),
                    "Count",
                    minute,
                    DBInstanceIdentifier=db.identifier,
                ),
            ]
            if db.replica_source:  # a read replica: seconds behind its source
                data["AWS/RDS"].append(
                    _datum(
                        "ReplicaLag",
                        _between(0.2, 2.0, "rds-lag", *key),
                        "Seconds",
                        minute,
                        DBInstanceIdentifier=db.identifier,
                    )
                )
        for cache in inventory.caches:
            for member in cache.member_clusters:
                key = (env, member, minute)
                data["AWS/ElastiCache"] += [
                    _datum(
                        "CPUUtilization",
                        _between(25, 40, "cache-cpu", *key),
                        "Percent",
                        minute,
                        CacheClusterId=member,
                    ),
                    _datum(
                        "DatabaseMemoryUsagePercentage",
                        _between(30, 40, "cache-mem", *key),
                        "Percent",
                        minute,
                        CacheClusterId=member,
                    ),
                    _datum("Evictions", 0, "Count", minute, CacheClusterId=member),
                ]
        for nat in inventory.nat_gateways:
            if nat.state != "available":
                continue
            key = (env, nat.id, minute)
            data["AWS/NATGateway"] += [
                _datum(
                    "BytesOutToDestination",
                    round(NAT_BYTES_OUT_PER_MINUTE * _between(0.8, 1.2, "nat-out", *key)),
                    "Bytes",
                    minute,
                    NatGatewayId=nat.id,
                ),
                _datum(
                    "BytesInFromDestination",
                    round(NAT_BYTES_IN_PER_MINUTE * _between(0.8, 1.2, "nat-in", *key)),
                    "Bytes",
                    minute,
                    NatGatewayId=nat.id,
                ),
            ]
        for svc in inventory.services:
            if svc.running == 0:
                continue  # no task, no ECS metric: as on AWS
            key = (env, svc.cluster, svc.name, minute)
            dims = {"ClusterName": svc.cluster, "ServiceName": svc.name}
            data["AWS/ECS"] += [
                _datum(
                    "CPUUtilization", _between(25, 40, "ecs-cpu", *key), "Percent", minute, **dims
                ),
                _datum(
                    "MemoryUtilization",
                    _between(40, 55, "ecs-mem", *key),
                    "Percent",
                    minute,
                    **dims,
                ),
            ]
        return {ns: datums for ns, datums in data.items() if datums}

    # -- background thread ------------------------------------------------------------------

    def start(self) -> "WorkloadSimulator":
        """Tick now (which backfills the last hour) and then every `tick_seconds`, in a thread."""
        if self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="workload-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop ticking; waits for a tick in progress (each AWS call fails fast)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                sent = self.tick()
                if any(sent.values()):
                    log.debug("simulator published", datapoints=sent)
            except Exception:  # the thread must outlive any surprise; the next tick retries
                log.exception("simulator tick crashed")
            if self._stop.wait(self.tick_seconds):
                return


def _catch_up(
    shown: dict[datetime, set[str]], fault: str | None, *, new_minute: bool
) -> list[datetime]:
    """The minutes already published in the gate's window that must now take `fault`.

    None on a tick that publishes a new minute: that minute carries the fault in full, and
    the minutes before it are left as they are (a fault applies from the next unpublished
    minute on); the ticks that follow within the minute catch up. Then, for 5xx and latency,
    every minute of the window not showing the fault yet, so the whole window reads faulty;
    for unhealthy, the latest minute only, since a gate reads HealthyHostCount's Minimum.
    """
    if new_minute or fault not in ("5xx", "latency", "unhealthy", "elb503") or not shown:
        return []
    if fault == "unhealthy":
        latest = max(shown)
        return [] if fault in shown[latest] else [latest]
    return sorted(m for m, kinds in shown.items() if fault not in kinds)


def _requests(env: str, lb: LoadBalancer, minute: datetime) -> int:
    return round(REQUESTS_PER_MINUTE * _between(0.95, 1.05, "requests", env, lb.arn, minute))


def _healthy_errors(env: str, lb: LoadBalancer, minute: datetime) -> int:
    return int(_between(0, 3, "5xx", env, lb.arn, minute))  # 0, 1 or 2


def _fault_errors(env: str, lb: LoadBalancer, minute: datetime, requests: int) -> int:
    return round(requests * _between(0.18, 0.22, "5xx-fault", env, lb.arn, minute))


def _healthy_latency(env: str, lb: LoadBalancer, minute: datetime) -> float:
    return HEALTHY_LATENCY_SECONDS * _between(0.85, 1.15, "latency", env, lb.arn, minute)


def _hosts(inventory: Inventory, lb: LoadBalancer) -> dict[str, int]:
    """Per target group of `lb`: the running ECS tasks and InService ASG instances behind it."""
    return {
        tg.arn: sum(s.running for s in inventory.services if tg.arn in s.target_groups)
        + sum(a.in_service for a in inventory.autoscaling_groups if tg.arn in a.target_groups)
        for tg in lb.target_groups
    }


def _registered(inventory: Inventory, target_group: str) -> bool:
    """Whether an ECS service or an Auto Scaling group of `inventory` serves `target_group`."""
    compute = [*inventory.services, *inventory.autoscaling_groups]
    return any(target_group in c.target_groups for c in compute)


def _alb(
    inventory: Inventory,
    lb: LoadBalancer,
    minute: datetime,
    fault: str | None,
    health_checks: int | None = None,
) -> list[Datum]:
    """One ALB's minute: requests, 5xx and latency per ALB and per serving target group,
    healthy hosts per target group.

    A target group's hosts are the running tasks of the ECS services and the InService
    instances of the Auto Scaling groups registered with it, so the count follows a compute
    migration. Requests are shared among the target groups that have hosts; with none, the
    ALB answers 503 itself (HTTPCode_ELB_5XX_Count) and no target metric is published.

    A standby's ALB (`health_checks` given: Route 53's requests a minute) serves only those
    checks, 2xx while its targets are healthy; with no check, no request metric at all. Its
    target groups publish nothing before compute (an ECS service, an Auto Scaling group) is
    registered with them: nothing before its targets exist; 0 once they are gone.
    """
    env = inventory.environment
    lb_dim = _elb_dimension(lb.arn)
    requests = _requests(env, lb, minute) if health_checks is None else health_checks
    if fault == "5xx":
        errors = _fault_errors(env, lb, minute, requests)
    elif health_checks is None:
        errors = _healthy_errors(env, lb, minute)
    else:
        errors = 0
    latency = FAULT_LATENCY_SECONDS if fault == "latency" else _healthy_latency(env, lb, minute)

    hosts = _hosts(inventory, lb)
    serving = [] if fault == "elb503" else [tg for tg in lb.target_groups if hosts[tg.arn] > 0]

    if not requests:
        data = []
    elif not serving:
        data = [
            _datum("RequestCount", requests, "Count", minute, LoadBalancer=lb_dim),
            _datum("HTTPCode_ELB_5XX_Count", requests, "Count", minute, LoadBalancer=lb_dim),
        ]
    else:
        data = _request_metrics(requests, errors, latency, minute, LoadBalancer=lb_dim)
        shares = zip(
            serving, _split(requests, len(serving)), _split(errors, len(serving)), strict=True
        )
        for tg, tg_requests, tg_errors in shares:
            data += _request_metrics(
                tg_requests,
                tg_errors,
                latency,
                minute,
                TargetGroup=_elb_dimension(tg.arn),
                LoadBalancer=lb_dim,
            )
    for tg in lb.target_groups:
        if health_checks is not None and not _registered(inventory, tg.arn):
            continue
        healthy = 0 if fault in ("unhealthy", "elb503") else hosts[tg.arn]
        dims = {"TargetGroup": _elb_dimension(tg.arn), "LoadBalancer": lb_dim}
        data += [
            _datum("HealthyHostCount", healthy, "Count", minute, **dims),
            _datum("UnHealthyHostCount", hosts[tg.arn] - healthy, "Count", minute, **dims),
        ]
    return data


def _fault_burst(
    inventory: Inventory, lb: LoadBalancer, minute: datetime, fault: str
) -> list[Datum]:
    """What turns one ALB's minute, already published healthy, into a minute with `fault`:
    datapoints added to the same minute (CloudWatch aggregates them with the first ones).

    - 5xx: the difference between the fault's 5xx count and the healthy one;
    - latency: as many samples again as the minute had requests, slow enough that the
      minute's Average becomes the fault's latency;
    - unhealthy: HealthyHostCount 0 and UnHealthyHostCount = the hosts, per target group;
    - elb503: the ALB's own 5xx for every request of the minute, and no healthy host.

    Only target metrics change: an ALB with no serving target group answers 503 itself,
    whatever the fault.
    """
    env = inventory.environment
    lb_dim = _elb_dimension(lb.arn)
    hosts = _hosts(inventory, lb)
    if fault == "elb503":
        requests = _requests(env, lb, minute)
        return [
            _datum("HTTPCode_ELB_5XX_Count", requests, "Count", minute, LoadBalancer=lb_dim),
            *(
                _datum("HealthyHostCount", 0, "Count", minute, TargetGroup=_elb_dimension(tg.arn),
                       LoadBalancer=lb_dim)
                for tg in lb.target_groups
            ),
        ]  # fmt: skip
    if fault == "unhealthy":
        data = []
        for tg in lb.target_groups:
            dims = {"TargetGroup": _elb_dimension(tg.arn), "LoadBalancer": lb_dim}
            data += [
                _datum("HealthyHostCount", 0, "Count", minute, **dims),
                _datum("UnHealthyHostCount", hosts[tg.arn], "Count", minute, **dims),
            ]
        return data
    serving = [tg for tg in lb.target_groups if hosts[tg.arn] > 0]
    if not serving:
        return []
    requests = _requests(env, lb, minute)
    shares = [({"LoadBalancer": lb_dim}, requests)] + [
        ({"TargetGroup": _elb_dimension(tg.arn), "LoadBalancer": lb_dim}, share)
        for tg, share in zip(serving, _split(requests, len(serving)), strict=True)
    ]
    if fault == "5xx":
        extra = _fault_errors(env, lb, minute, requests) - _healthy_errors(env, lb, minute)
        extras = [extra, *_split(extra, len(serving))]
        return [
            _datum("HTTPCode_Target_5XX_Count", n, "Count", minute, **dims)
            for (dims, _), n in zip(shares, extras, strict=True)
        ]
    if fault == "latency":
        # n healthy samples averaging h plus n samples summing n * (2F - h) average F.
        per_request = 2 * FAULT_LATENCY_SECONDS - _healthy_latency(env, lb, minute)
        return [
            _statistic(
                "TargetResponseTime",
                samples=n,
                total=n * per_request,
                low=FAULT_LATENCY_SECONDS * 0.4,
                high=FAULT_LATENCY_SECONDS * 2.5,
                minute=minute,
                **dims,
            )
            for dims, n in shares
            if n
        ]
    return []


def _statistic(
    name: str, *, samples: int, total: float, low: float, high: float, minute: datetime,
    **dims: str,
) -> Datum:  # fmt: skip
    """A datum of many samples at once (StatisticValues), in seconds."""
    return {
        "MetricName": name,
        "Dimensions": _dims(**dims),
        "Timestamp": minute,
        "StatisticValues": {"SampleCount": samples, "Sum": total, "Minimum": low, "Maximum": high},
        "Unit": "Seconds",
    }


def _request_metrics(
    requests: int, errors: int, latency: float, minute: datetime, **dims: str
) -> list[Datum]:
    """RequestCount, HTTPCode_Target_5XX_Count and TargetResponseTime for one dimension set.

    TargetResponseTime carries one sample per request, as on AWS, so its Average is the
    latency and its SampleCount the request count.
    """
    data = [
        _datum("RequestCount", requests, "Count", minute, **dims),
        _datum("HTTPCode_Target_5XX_Count", errors, "Count", minute, **dims),
    ]
    if requests:
        data.append(
            _statistic(
                "TargetResponseTime",
                samples=requests,
                total=requests * latency,
                low=latency * 0.4,
                high=latency * 2.5,
                minute=minute,
                **dims,
            )
        )
    return data
