"""Identifiers the storage hands out, the same whichever back-end keeps the data."""

from __future__ import annotations

import os
import secrets
import socket
import time


def new_queue_id() -> str:
    """Sortable by arrival, unguessable enough to not collide: ms time + 40 random bits."""
    return f"{int(time.time() * 1000):011X}{secrets.token_hex(5).upper()}"


def new_pickup_id() -> str:
    """192 random bits, URL-safe, never starting with "-": admins paste these ids into
    `sealgate pickup revoke ID`, where a leading "-" reads as an option."""
    while True:
        token = secrets.token_urlsafe(24)
        if not token.startswith("-"):
            return token


def new_owner_id() -> str:
    """Names the process that claims work: host, pid and a nonce (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
