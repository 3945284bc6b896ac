"""One local Prefect server that every phasegate command reuses (SQLite under PHASEGATE_HOME).

Without it, each command that runs a flow starts a temporary Prefect API of its own: 10-17 s
before the first step, and its runs vanish with it, so the UI never shows them. Instead
`phasegate server up` (and `demo`, `sandbox up`, and the first command that needs Prefect)
starts `prefect server start` detached, and every later command talks to it:

    PHASEGATE_HOME/prefect-server/state.json   pid, port, started_at, log_file
    PHASEGATE_HOME/prefect-server/server.log   the server's output
    PHASEGATE_HOME/prefect-server/home/        its PREFECT_HOME: the SQLite database

With PREFECT_API_URL set, the user's server is used and this one is never started.
A pid is signalled only after /proc shows it still is a Prefect server.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from phasegate.errors import PhasegateError
from phasegate.home import phasegate_home

HOST = "127.0.0.1"
DEFAULT_PORT = 4200
START_SECONDS = 90.0


class ServerState(BaseModel):
    """What state.json records about the running local server."""

    pid: int
    port: int
    started_at: datetime
    log_file: str

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.port}"


@dataclass(frozen=True)
class ServerStatus:
    state: ServerState | None
    alive: bool
    answering: bool

    @property
    def running(self) -> bool:
        return self.alive and self.answering


def server_dir() -> Path:
    path = phasegate_home() / "prefect-server"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _state_path() -> Path:
    return server_dir() / "state.json"


def read_state() -> ServerState | None:
    try:
        return ServerState.model_validate_json(_state_path().read_text())
    except (FileNotFoundError, ValidationError):
        return None


def _is_server_process(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (macOS): trust the pid
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return b"prefect\x00server\x00start" in cmdline


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/api/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def server_status() -> ServerStatus:
    state = read_state()
    if state is None:
        return ServerStatus(None, alive=False, answering=False)
    alive = _is_server_process(state.pid)
    return ServerStatus(state, alive=alive, answering=alive and _answers(state.port))


def running_api_url() -> str | None:
    """The local server's API URL when it is running and answering; else None."""
    status = server_status()
    return status.state.api_url if status.running and status.state else None


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(port: int | None = None) -> ServerState:
    """Start the local server (on `port`, default 4200 or any free port if 4200 is taken),
    or return the one already running. Waits until it answers."""
    status = server_status()
    if status.running and status.state is not None:
        return status.state
    if status.state is not None and status.alive:
        raise PhasegateError(
            f"the local Prefect server (pid {status.state.pid}) does not answer on port "
            f"{status.state.port}; see {status.state.log_file}, or `phasegate server down`"
        )
    if port is not None and not _free(port):
        raise PhasegateError(f"port {port} on {HOST} is in use; choose another with --port")
    port = port or (DEFAULT_PORT if _free(DEFAULT_PORT) else _any_free_port())
    home = server_dir() / "home"
    home.mkdir(exist_ok=True)
    log_file = server_dir() / "server.log"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"http://{HOST}:{port}/api",
    }
    env.pop("PREFECT_API_URL", None)
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)]
    with log_file.open("wb") as out:
        child = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    state = ServerState(
        pid=child.pid, port=port, started_at=datetime.now(UTC), log_file=str(log_file)
    )
    deadline = time.monotonic() + START_SECONDS
    while not _answers(port):
        if child.poll() is not None or time.monotonic() > deadline:
            _stop(child.pid)
            raise PhasegateError(f"the local Prefect server did not start; see {log_file}")
        time.sleep(0.25)
    _state_path().write_text(state.model_dump_json(indent=2) + "\n")
    return state


def _stop(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM to the server's process group, SIGKILL after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_server_process(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def stop_server() -> ServerState | None:
    """Stop the local server if it runs; what it was (None: there was none)."""
    status = server_status()
    if status.state is not None and status.alive:
        _stop(status.state.pid)
    with contextlib.suppress(FileNotFoundError):
        _state_path().unlink()
    return status.state if status.alive else None
