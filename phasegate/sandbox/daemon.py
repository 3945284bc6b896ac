"""The sandbox process: `python -m phasegate.sandbox.daemon --port P [--latency F]`.

Started detached by `phasegate sandbox up` (phasegate.sandbox.server); runs the sandbox's HTTP
server (moto plus the gap-filling front of phasegate.sandbox.app) on 127.0.0.1:P and the
workload simulator beside it, until SIGTERM or SIGINT, then stops both and exits 0. Its
stdout and stderr are the sandbox log file, so it logs JSON lines and keeps werkzeug's
per-request lines out (the simulator alone makes several requests a second).
"""

import argparse
import functools
import logging
import signal
import threading
from types import FrameType

import structlog

from phasegate import logs
from phasegate.sandbox.app import SandboxServer
from phasegate.sandbox.server import HOST
from phasegate.sandbox.simulator import WorkloadSimulator, sandbox_environments

log = structlog.get_logger("phasegate.sandbox")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m phasegate.sandbox.daemon",
        description="The phasegate sandbox: moto on 127.0.0.1 plus the workload simulator.",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--tick-seconds",
        type=float,
        default=10.0,
        help="real seconds between simulator ticks (default 10)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="latency factor: AWS's durations times this (default 0: every change instant)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.latency < float("inf"):
        parser.error("--latency must be a number >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logs.configure(json=True)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    try:
        server = SandboxServer(port=args.port, host=HOST, latency=args.latency).start()
    except OSError as exc:
        log.error("cannot listen", host=HOST, port=args.port, error=str(exc))
        return 1
    simulator = WorkloadSimulator(
        functools.partial(sandbox_environments, server.url), tick_seconds=args.tick_seconds
    ).start()
    log.info(
        "sandbox ready", endpoint=server.url, tick_seconds=args.tick_seconds, latency=args.latency
    )

    while not stop.wait(0.5):  # a bounded wait keeps the main thread responsive to signals
        pass

    log.info("sandbox stopping")
    simulator.stop()
    server.stop()
    log.info("sandbox stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
