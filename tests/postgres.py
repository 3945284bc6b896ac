"""A throwaway PostgreSQL cluster on 127.0.0.1 and a Prefect server backed by it, for tests.

Debian's server binaries (scripts/ensure-postgresql, run by `make test`) make a cluster in a
temporary folder; PostgreSQL refuses to run as root, so as root the cluster belongs to the
`postgres` user the package creates. Everything started here is stopped by pid afterwards.
"""

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from conftest import wait_until_answering


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"no {name}: install Debian's postgresql (scripts/ensure-postgresql)")
    return found[-1]


def _as_owner(argv: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


@contextlib.contextmanager
def postgres_cluster(port: int) -> Iterator[str]:
    """initdb + pg_ctl start on 127.0.0.1:`port` (trust auth); the SQLAlchemy URL of a
    database named prefect. Stopped (pg_ctl stop -m fast) and removed afterwards."""
    owner = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="phasegate-pg-"))
    data = root / "data"
    if owner:
        entry = pwd.getpwnam(owner)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    log = root / "postgres.log"

    def run(argv: list[str]) -> None:
        done = subprocess.run(_as_owner(argv, owner), capture_output=True, text=True)
        if done.returncode:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}\n{tail}")

    try:
        run([_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        options = f"-h 127.0.0.1 -p {port} -k {root} -c max_connections=200 -c fsync=off"
        run([_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"])
        try:
            run([_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "prefect"])
            yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect"
        finally:
            run([_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def prefect_server(port: int, database_url: str, home: Path) -> Iterator[str]:
    """`prefect server start` on 127.0.0.1:`port` with `database_url`; its API URL."""
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    out = (home / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_until_answering(f"{url}/health", server, 120, home / "server.log")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        out.close()
