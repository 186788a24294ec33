"""Listener processes share the SMTP socket and share the work: a burst of connections
from one mail server is spread over them, not taken by whichever woke first."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack

from tests.gateway_process import GatewayProcess
from tests.journey import wait_until
from tests.process_tree import established_connections, wait_for_workers

BURST = 20


def open_connections(port: int, stack: ExitStack) -> Iterator[socket.socket]:
    """BURST connections opened at once, each answered with the greeting."""
    clients = [stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
               for _ in range(BURST)]
    for client in clients:
        assert client.recv(512).startswith(b"220")
        yield client


def test_a_burst_of_connections_is_spread_over_the_listener_processes(
        gateway: GatewayProcess) -> None:
    assert gateway.process is not None
    listeners = wait_for_workers(gateway.process.pid, "smtp", 2)
    with ExitStack() as stack:
        assert len(list(open_connections(gateway.smtp_port, stack))) == BURST
        wait_until("every connection is held by a listener", lambda: sum(
            established_connections(p, gateway.smtp_port) for p in listeners) == BURST,
            gateway)
        shares = sorted(established_connections(p, gateway.smtp_port) for p in listeners)
    # asyncio's accept loop gives a burst to one listener (20/0); taking turns splits it.
    print("SHARES", shares)
    assert shares[0] >= BURST // 5, shares
