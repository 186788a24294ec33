"""An SMTP listener process: accepts on the socket it shares with the other listeners,
classifies with its own policy holder (it follows the supervisor's reloads: a shared
generation number, checked before each classification, and SIGHUP), queues into the store on
its own connection, and wakes the runners."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

from gateway.classify.holder import PolicyHolder
from gateway.inbound.acceptor import TurnTakingAcceptor
from gateway.inbound.server import RelayHandler, smtp_factory
from gateway.storage import open_storage
from gateway.workers.handoff import Handoff, report_ready, worker_owner
from gateway.workers.limits import SharedConnectionLimits
from gateway.workers.shared import SharedGeneration
from gateway.workers.wake import Waker

log = logging.getLogger("sealgate.smtp")


async def run_listener(handoff: Handoff) -> None:
    config = handoff.config
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    policy = PolicyHolder(config.policy_dir, SharedGeneration(handoff.policy_fd))
    loop.add_signal_handler(signal.SIGHUP, policy.follow)
    store = open_storage(config, owner=worker_owner(handoff, os.getpid()))
    try:
        handler = RelayHandler(config, store, policy, Waker(handoff.wake_tx).wake)
        limits = SharedConnectionLimits(handoff.limits_fd, handoff.index - 1,
                                        config.smtp.max_connections,
                                        config.smtp.max_connections_per_client)
        acceptor = TurnTakingAcceptor(socket.socket(fileno=handoff.listen_fd),
                                      smtp_factory(config, handler, limits),
                                      limits.ahead_of_others)
        acceptor.start()
        report_ready(handoff)
        await stop.wait()
        log.info("smtp listener %d: no new mail is accepted", handoff.index)
        acceptor.close()  # sessions still open are cut at exit
    finally:
        store.close()
