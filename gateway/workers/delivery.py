"""A queue-runner process: claims due work from the store under leases on its own
connection, delivers it, and settles it; woken by the listeners and the portal."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from gateway.ops.health import start_heartbeat
from gateway.storage import open_storage
from gateway.workers.handoff import Handoff, report_ready, worker_owner
from gateway.workers.wake import listen_for_wakes

log = logging.getLogger("sealgate.queue")


async def run_runner(handoff: Handoff) -> None:
    from gateway.serve import build_runner  # the wiring of a runner lives with serve

    config = handoff.config
    loop = asyncio.get_running_loop()
    store = open_storage(config, owner=worker_owner(handoff, os.getpid()))
    try:
        runner = build_runner(config, store)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
        # The policy applies at accept time; a runner has nothing to reload.
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        receiver = listen_for_wakes(loop, handoff.wake_rx, runner.wake)
        report_ready(handoff)
        start_heartbeat(f"delivery-{handoff.index}")  # for /readyz, with [metrics] listen
        try:
            await runner.run()
        finally:
            loop.remove_reader(receiver.fileno())
    finally:
        store.close()
