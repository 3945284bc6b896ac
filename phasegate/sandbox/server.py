"""Start, seed, inspect and stop the embedded sandbox: a detached process on 127.0.0.1.

`phasegate sandbox up` must outlive the command that started it (the user runs `inventory`,
`plan`, `run` against it afterwards), so the sandbox is a background process in its own
session (`python -m phasegate.sandbox.daemon`), its output in a log file, and what it is
(pid, port, environments) in a state file under PHASEGATE_HOME, never in the repository:

    PHASEGATE_HOME/sandbox/state.json     pid, port, started_at, environments, log_file
    PHASEGATE_HOME/sandbox/sandbox.log    the daemon's stdout and stderr (kept after `down`)
    PHASEGATE_HOME/sandbox/faults.json    injected faults, read by the workload simulator
    PHASEGATE_HOME/environments/NAME.yaml one config file per seeded environment

One sandbox runs at a time. A second `up` is refused while one is alive, on any port, even the
same one: reusing it silently would hand back environments the user may have half-migrated,
and the state file can only describe one process. `down` then `up` gives a fresh one.

A pid is only ever signalled after checking (on Linux, through /proc) that it still is a
sandbox daemon, so a stale state file can never make `down` kill an unrelated process that
happens to have inherited the pid.
"""

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog
import yaml
from pydantic import BaseModel, ValidationError

from phasegate.aws import AwsClients
from phasegate.config import AwsSettings, EnvironmentConfig, Targets, parse_environment
from phasegate.errors import ConfigError, PhasegateError
from phasegate.home import config_dir, generated_environments_dir, phasegate_home
from phasegate.sandbox import terraform_seed
from phasegate.sandbox.seed import seed_environment, seed_hosted_zone
from phasegate.sandbox.strays import seed_strays

log = structlog.get_logger("phasegate.sandbox")

HOST = "127.0.0.1"
REGION = "us-east-1"
DAEMON_MODULE = "phasegate.sandbox.daemon"
HEALTH_PATH = "/moto-api/"  # moto's dashboard page: cheap, and only moto serves it
MAX_ENVIRONMENTS = 250  # the seed's CIDRs are 10.INDEX.0.0/16
# The simulator's traffic (1000 requests a minute all day at 120 ms: its REQUESTS_PER_MINUTE
# and HEALTHY_LATENCY_SECONDS) as `usage`, so `phasegate compare` prices Lambda and App Runner
# for the workload the sandbox shows.
SANDBOX_USAGE = {
    "requests_per_month": 43_800_000,
    "avg_duration_ms": 120,
    "active_hours_per_day": 24,
}

# Sandboxes this process started: kept so that `stop_sandbox` can reap them (a dead child
# that is never waited for stays a zombie, and a zombie still answers `kill(pid, 0)`).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def sandbox_dir() -> Path:
    """PHASEGATE_HOME/sandbox: the sandbox's state, log and faults files."""
    path = phasegate_home() / "sandbox"
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_path() -> Path:
    return sandbox_dir() / "state.json"


def log_path() -> Path:
    return sandbox_dir() / "sandbox.log"


def faults_path() -> Path:
    return sandbox_dir() / "faults.json"


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` in one step, so a concurrent reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class SandboxState(BaseModel):
    """What `state.json` records about the running sandbox."""

    pid: int
    port: int
    started_at: datetime
    environments: list[str] = []
    log_file: str

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"


@dataclass(frozen=True)
class SandboxStatus:
    """The state file (if any) and whether its process is alive and answering."""

    state: SandboxState | None
    alive: bool
    answering: bool

    @property
    def running(self) -> bool:
        return self.alive and self.answering


@dataclass(frozen=True)
class StopResult:
    """What `stop_sandbox` found and did."""

    state: SandboxState | None  # None: there was no state file at all
    was_running: bool  # False with a state: the state was stale (process already gone)
    removed: list[Path] = field(default_factory=list)


# -- environments ---------------------------------------------------------------------------


def environment_names(count: int, first_index: int = 1) -> list[str]:
    """Sandbox environment names by index: 1 is `demo`, N > 1 is `demo-N`."""
    return ["demo" if i == 1 else f"demo-{i}" for i in range(first_index, first_index + count)]


def environment_file(name: str) -> Path:
    return generated_environments_dir() / f"{name}.yaml"


def write_environment_file(name: str, endpoint: str, extra: dict | None = None) -> Path:
    """Write (and validate first) the config file of sandbox environment `name`; `extra`
    sections (an environment made by Terraform: its executor and stack) are added."""
    data = {
        "name": name,
        "tier": "dev",
        "aws": {"region": REGION, "endpoint_url": endpoint},
        "discovery": {"tags": {"Environment": name}},
        "targets": Targets().model_dump(),
        # The simulator publishes every few seconds, so a gate need not wait minutes per round.
        "gates": {"interval_seconds": 5, "count": 3},
        "usage": SANDBOX_USAGE,
        **_opted_in(name),
        **(extra or {}),
    }
    EnvironmentConfig.model_validate(data)  # a file we write must be one we can load
    path = environment_file(name)
    header = "# Written by `phasegate sandbox up|seed`; removed by `phasegate sandbox down`.\n"
    write_text_atomic(path, header + yaml.safe_dump(data, sort_keys=False))
    return path


def _opted_in(name: str) -> dict[str, object]:
    """The opt-in sections (`regions`) of config/environments/NAME.yaml, if it sets them: the
    committed file says whether the sandbox's copy builds phase 3's second region (the zone it
    names is the one `sandbox up` seeds). A broken file is a ConfigError naming it and the
    field, before anything is written."""
    path = config_dir() / "environments" / f"{name}.yaml"
    if not path.is_file():
        return {}
    regions = parse_environment(path).regions
    if regions.secondary is None:
        return {}
    return {"regions": regions.model_dump(mode="json", exclude_defaults=True)}


def retire_ledger(name: str) -> Path | None:
    """Move `name`'s checkpoints out of the way before its environment is seeded anew.

    A sandbox's resources die with it, but its ledger lives on under PHASEGATE_HOME: left in
    place, the next sandbox's `demo` would be planned, verified and rolled back against
    records of resources that no longer exist (phase 2 then fails on a parameter group the
    new sandbox never had). The old chain is moved, never deleted, so it can still be read.
    """
    ledger = phasegate_home() / "results" / name
    if not ledger.is_dir():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    retired = phasegate_home() / "results-retired" / f"{name}-{stamp}"
    retired.parent.mkdir(parents=True, exist_ok=True)
    ledger.rename(retired)
    log.info("earlier sandbox's ledger moved aside", environment=name, to=str(retired))
    return retired


def seed_sandbox(
    endpoint: str,
    names: Sequence[str],
    first_index: int = 1,
    via: str = "api",
    tiers: Mapping[str, str] | None = None,
    strays: bool = False,
) -> list[Path]:
    """Seed today's architecture for each of `names` and write its config file; the files.
    With `strays`, each also gets an unmanaged EC2 instance and a Lambda interface in its
    private subnets (phasegate.sandbox.strays).

    `via` "terraform" applies terraform/ instead (phasegate.sandbox.terraform_seed), and the
    environment's config then uses the Terraform executor on that stack.

    `names[i]` gets index `first_index + i`, which keeps its VPC CIDR (10.INDEX.0.0/16) apart
    from the others'. A config file is written only once its environment is fully seeded, so
    the simulator never discovers half an environment. `tiers` gives a name its tier (else dev).
    """
    if first_index < 1 or first_index + len(names) - 1 > MAX_ENVIRONMENTS:
        raise ConfigError(
            f"sandbox environment indexes must stay within 1..{MAX_ENVIRONMENTS} "
            f"(asked for {first_index}..{first_index + len(names) - 1})"
        )
    clients = AwsClients(AwsSettings(region=REGION, endpoint_url=endpoint))
    paths = []
    for offset, name in enumerate(names):
        started = time.monotonic()
        extra = None
        retire_ledger(name)
        with _instant(endpoint):
            if via == "terraform":
                extra = terraform_seed.apply_environment(
                    clients, sandbox_dir() / "terraform", name, first_index + offset, endpoint
                )
            else:
                seed_environment(clients, name, first_index + offset)
            seed_hosted_zone(clients, name)  # regions.expand's failover records go there
            if strays:
                seed_strays(clients, name)
        if tiers and name in tiers:
            extra = {**(extra or {}), "tier": tiers[name]}
        paths.append(write_environment_file(name, endpoint, extra))
        log.debug(
            "environment seeded", environment=name, seconds=round(time.monotonic() - started, 2)
        )
    return paths


def _latency_factor(endpoint: str, factor: float | None = None) -> float:
    """The sandbox's latency factor (phasegate.sandbox.latency), after setting it if given."""
    data = None if factor is None else json.dumps({"factor": factor}).encode()
    request = urllib.request.Request(
        f"{endpoint}/_phasegate/latency", data=data, method="GET" if data is None else "POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return float(json.load(answer)["factor"])


@contextlib.contextmanager
def _instant(endpoint: str) -> Iterator[None]:
    """Latency factor 0 meanwhile: a seeded environment is running and available at once,
    today's architecture as it stands, not one still being created."""
    factor = _latency_factor(endpoint)
    if factor:
        _latency_factor(endpoint, 0.0)
    try:
        yield
    finally:
        if factor:
            _latency_factor(endpoint, factor)


# -- processes and ports --------------------------------------------------------------------


def _answers(port: int, timeout: float = 1.0) -> bool:
    """True when something on the port answers the health path with 200 (no proxy involved)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", HEALTH_PATH)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def port_in_use(port: int) -> bool:
    """True when 127.0.0.1:`port` cannot be bound (with the same SO_REUSEADDR as the server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def _exited(pid: int) -> bool:
    """True when `pid` is gone (or a zombie); reaps it when it is our child."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return False
        del _CHILDREN[pid]
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, but another user's
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def _is_sandbox_process(pid: int) -> bool:
    """True when `pid` is alive and (where /proc can tell) is a sandbox daemon."""
    if pid <= 0 or _exited(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (macOS): trust the pid
    except OSError:
        return False
    return DAEMON_MODULE.encode() in cmdline


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _exited(pid):
            return True
        time.sleep(0.05)
    return _exited(pid)


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL after `timeout`; raises if the process still will not go."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_for_exit(pid, timeout):
        return
    log.warning("sandbox ignored SIGTERM; killing it", pid=pid, timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_for_exit(pid, 5.0):
        raise PhasegateError(f"sandbox process {pid} did not exit after SIGKILL")


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    tail = text.splitlines()[-lines:]
    return ("\n" + "\n".join(tail)) if tail else ""


def _wait_until_answering(child: subprocess.Popen[bytes], port: int, wait: float, log_file: Path):
    deadline = time.monotonic() + wait
    while True:
        code = child.poll()
        if code is not None:
            raise PhasegateError(
                f"the sandbox on port {port} exited with code {code} before it answered; "
                f"see {log_file}{_log_tail(log_file)}"
            )
        if _answers(port):
            return
        if time.monotonic() > deadline:
            raise PhasegateError(
                f"the sandbox did not answer on {HOST}:{port} within {wait:g}s; see {log_file}"
                f"{_log_tail(log_file)}"
            )
        time.sleep(0.1)


# -- state ----------------------------------------------------------------------------------


def read_state() -> SandboxState | None:
    """The state file's content; None when there is none (or it is unreadable, logged)."""
    path = state_path()
    try:
        return SandboxState.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        log.warning(
            "sandbox state file unreadable; treating it as stale", path=str(path), error=str(exc)
        )
        return None


def _write_state(state: SandboxState) -> None:
    write_text_atomic(state_path(), state.model_dump_json(indent=2) + "\n")


def _remove_files(state: SandboxState | None) -> list[Path]:
    """Remove the state file, the faults file and the environment files `state` lists."""
    names = state.environments if state else []
    removed = []
    for path in [state_path(), faults_path(), *(environment_file(n) for n in names)]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def sandbox_status() -> SandboxStatus:
    """The recorded sandbox and whether it is alive and answering right now."""
    state = read_state()
    if state is None:
        return SandboxStatus(None, alive=False, answering=False)
    alive = _is_sandbox_process(state.pid)
    return SandboxStatus(state, alive=alive, answering=alive and _answers(state.port))


def _running_state() -> SandboxState:
    status = sandbox_status()
    if status.state is None or not status.alive:
        raise PhasegateError("no sandbox is running; start one with `phasegate sandbox up`")
    if not status.answering:
        raise PhasegateError(
            f"the sandbox (pid {status.state.pid}) does not answer on port {status.state.port}; "
            f"see {status.state.log_file}, or restart it with `phasegate sandbox down` and `up`"
        )
    return status.state


def _seed_into(
    state: SandboxState,
    names: list[str],
    first_index: int,
    via: str = "api",
    tiers: Mapping[str, str] | None = None,
    strays: bool = False,
) -> SandboxState:
    """Seed `names` one by one, recording each in the state file as soon as it exists, so
    `down` removes exactly what was written even if a later one fails."""
    for index, name in enumerate(names, start=first_index):
        if name in state.environments:
            raise PhasegateError(f"sandbox environment {name!r} already exists")
        seed_sandbox(state.endpoint, [name], first_index=index, via=via, tiers=tiers, strays=strays)
        state = state.model_copy(update={"environments": [*state.environments, name]})
        _write_state(state)
    return state


# -- the public verbs -----------------------------------------------------------------------


def start_sandbox(
    port: int = 4566,
    environments: int = 1,
    wait: float = 15,
    tick_seconds: float = 2.0,
    latency: float = 0.0,
    via: str = "api",
    tiers: Mapping[str, str] | None = None,
    strays: bool = False,
) -> SandboxState:
    """Start the sandbox daemon on `port` and seed `environments` environments (by API calls,
    or with `via` "terraform" by applying terraform/); with `tiers` (name -> tier, from
    phasegate.sandbox.tiers) those environments instead.

    `latency` is the latency model's factor (phasegate.sandbox.latency): 0 makes every change
    instant, 1 takes AWS's own time. Seeding runs at factor 0 whatever it is.

    All or nothing: if the daemon does not come up or seeding fails, the process is stopped
    and every file written is removed before the error is raised.
    """
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}")
    if not 1 <= environments <= MAX_ENVIRONMENTS:
        raise ConfigError(
            f"--environments must be between 1 and {MAX_ENVIRONMENTS}, got {environments}"
        )
    if tiers is not None and not 1 <= len(tiers) <= MAX_ENVIRONMENTS:
        raise ConfigError(f"--tiers: 1 to {MAX_ENVIRONMENTS} environments, got {len(tiers)}")
    if via not in ("api", "terraform"):
        raise ConfigError(f"--via must be api or terraform, got {via!r}")
    if via == "terraform":
        terraform_seed.preflight()
    status = sandbox_status()
    if status.state is not None and status.alive:
        state = status.state
        if status.answering:
            raise PhasegateError(
                f"a sandbox is already running (pid {state.pid}, port {state.port}); "
                "use it, or stop it first with `phasegate sandbox down`"
            )
        raise PhasegateError(
            f"a sandbox process is alive (pid {state.pid}, port {state.port}) but does not "
            f"answer; see {state.log_file}, and stop it with `phasegate sandbox down`"
        )
    if status.state is not None:
        log.info("removing stale sandbox state", pid=status.state.pid, port=status.state.port)
        _remove_files(status.state)
    if not (latency >= 0 and latency != float("inf")):
        raise ConfigError(f"--latency must be a number >= 0 (0: instant), got {latency}")
    if port_in_use(port):
        raise PhasegateError(f"port {port} on {HOST} is already in use; choose another with --port")

    log_file = log_path()
    argv = [sys.executable, "-m", DAEMON_MODULE, "--port", str(port)]
    argv += ["--tick-seconds", str(tick_seconds), "--latency", str(latency)]
    with log_file.open("wb") as out:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed by the terminal's Ctrl-C or hang-up
            close_fds=True,
        )
    _CHILDREN[child.pid] = child
    state = SandboxState(
        pid=child.pid, port=port, started_at=datetime.now(UTC), log_file=str(log_file)
    )
    names = list(tiers) if tiers else environment_names(environments)
    try:
        _wait_until_answering(child, port, wait, log_file)
        _write_state(state)
        log.debug("sandbox answering", pid=child.pid, port=port)
        state = _seed_into(state, names, first_index=1, via=via, tiers=tiers, strays=strays)
    except BaseException:
        with contextlib.suppress(PhasegateError):
            _terminate(child.pid, timeout=5.0)
        _remove_files(state.model_copy(update={"environments": names}))
        raise
    return state


def add_environments(count: int = 1) -> tuple[SandboxState, list[str]]:
    """Seed `count` more environments into the running sandbox; its new state and the names."""
    if count < 1:
        raise ConfigError(f"--environments must be at least 1, got {count}")
    state = _running_state()
    first = len(state.environments) + 1
    names = environment_names(count, first_index=first)
    return _seed_into(state, names, first_index=first), names


def stop_sandbox(timeout: float = 10.0) -> StopResult:
    """Stop the sandbox (SIGTERM, SIGKILL after `timeout`) and remove the files it wrote.

    Nothing running is not an error: the result says so, and stale files are cleaned up.
    """
    status = sandbox_status()
    if status.state is None:
        return StopResult(None, was_running=False, removed=_remove_files(None))
    if status.alive:
        _terminate(status.state.pid, timeout)
        log.debug("sandbox stopped", pid=status.state.pid, port=status.state.port)
    return StopResult(status.state, was_running=status.alive, removed=_remove_files(status.state))
