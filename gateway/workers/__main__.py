"""`python -m gateway.workers smtp|delivery N`: one worker process of `sealgate serve`.

The supervisor starts it (never a person: the config comes pickled on stdin). The command
line is what `ps` shows, so it names the kind and number of the worker.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from gateway import event_loop
from gateway.ops.logs import configure as configure_logging
from gateway.workers.handoff import Handoff, read_handoff

PR_SET_PDEATHSIG = 1


def die_with_supervisor(supervisor_pid: int) -> None:
    """Get SIGKILL when the supervisor goes (kill -9 included): no worker lingers, and the
    store lock they share is free for the next `serve` as soon as they are all gone. If the
    supervisor already went before this ran, exit now."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor_pid:
        os._exit(1)


def main() -> int:
    # The supervisor's pid is known before the handoff is read: prctl first, so that a
    # supervisor dying while we read is noticed too.
    die_with_supervisor(int(os.environ.get("SEALGATE_SUPERVISOR_PID", "0")))
    handoff: Handoff = read_handoff(sys.stdin.buffer)
    # The supervisor's format, with the worker named: its lines share the supervisor's log.
    configure_logging(handoff.config.log.format, f"{handoff.kind}-{handoff.index}")
    if handoff.kind == "smtp":
        from gateway.workers.smtp import run_listener
        # asyncio's loop for the listeners: under uvloop the shared connection caps lost
        # count of closed sessions (tests/test_smtp_limits.py); the gain was in delivery.
        event_loop.run(run_listener(handoff), fast=False)
    elif handoff.kind == "delivery":
        from gateway.workers.delivery import run_runner
        event_loop.run(run_runner(handoff))
    else:
        raise SystemExit(f"unknown worker kind {handoff.kind!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
