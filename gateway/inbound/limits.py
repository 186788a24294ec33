"""Connection caps shared by every SMTP session of a listener."""

from __future__ import annotations

import collections

from gateway.inbound import codes


class ConnectionLimits:
    """Open sessions in total and per client address, shared by every session."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.open: collections.Counter[str] = collections.Counter()

    def admit(self, ip: str) -> str | None:
        """None, and the session counts, or the 421 reply refusing it."""
        if sum(self.open.values()) >= self.total:
            return codes.TOO_MANY_CONNECTIONS
        if self.open[ip] >= self.per_client:
            return codes.TOO_MANY_FROM_CLIENT
        self.open[ip] += 1
        return None

    def ahead_of_others(self) -> bool:
        """Does this listener hold more sessions than another listener process? (One
        process alone never is.)"""
        return False

    def release(self, ip: str) -> None:
        self.open[ip] -= 1
        if self.open[ip] <= 0:
            del self.open[ip]
