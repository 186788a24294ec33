"""smtp.max_connections and smtp.max_connections_per_client over every SMTP listener
process: the counters live in one shared memory file (a memfd made by the supervisor),
read and updated under a POSIX record lock (per process, unlike flock on a descriptor
they all share).

Each listener counts its own sessions in its own region, and a check adds the regions up:
when a listener dies (kill -9 included), the supervisor zeroes its region, so the sessions
it had open stop counting. Per-client counts are kept in hash buckets: two clients whose
addresses share a bucket count against each other, which can only make the cap stricter,
never looser (with 65536 buckets and a few hundred clients at once, that is rare).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import zlib

from gateway.inbound import codes
from gateway.inbound.server import ConnectionLimits

BUCKETS = 65536
_SLOT = struct.Struct("=I")
REGION = _SLOT.size * (1 + BUCKETS)  # slot 0: the region's open sessions; then client buckets


def shared_counters(regions: int) -> int:
    """A new, zeroed, inheritable shared memory file with REGIONS regions; its descriptor."""
    fd = os.memfd_create("sealgate-smtp-limits", 0)  # no MFD_CLOEXEC: listeners inherit it
    os.ftruncate(fd, REGION * regions)
    return fd


def clear_region(fd: int, region: int) -> None:
    """Forget the sessions of a listener that is gone (REGION: its index - 1)."""
    fcntl.lockf(fd, fcntl.LOCK_EX)
    try:
        os.pwrite(fd, bytes(REGION), REGION * region)
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)


class SharedConnectionLimits(ConnectionLimits):
    """The caps of ConnectionLimits, counted over every listener process."""

    def __init__(self, fd: int, region: int, total: int, per_client: int) -> None:
        super().__init__(total, per_client)
        self.fd = fd
        self.regions = os.fstat(fd).st_size // REGION
        self.own = REGION * region
        self.counters = mmap.mmap(fd, REGION * self.regions)

    def _sum(self, slot: int) -> int:
        return sum(_SLOT.unpack_from(self.counters, REGION * r + slot)[0]
                   for r in range(self.regions))

    def _add(self, slot: int, delta: int) -> None:
        offset = self.own + slot
        value = _SLOT.unpack_from(self.counters, offset)[0]
        _SLOT.pack_into(self.counters, offset, max(0, value + delta))

    @staticmethod
    def _bucket(ip: str) -> int:
        return _SLOT.size * (1 + zlib.crc32(ip.encode()) % BUCKETS)

    def admit(self, ip: str) -> str | None:
        """None, and the session counts, or the 421 reply refusing it."""
        bucket = self._bucket(ip)
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            if self._sum(0) >= self.total:
                return codes.TOO_MANY_CONNECTIONS
            if self._sum(bucket) >= self.per_client:
                return codes.TOO_MANY_FROM_CLIENT
            self._add(0, 1)
            self._add(bucket, 1)
            return None
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def ahead_of_others(self) -> bool:
        # Read without the lock: a count off by one only changes which listener accepts.
        own = _SLOT.unpack_from(self.counters, self.own)[0]
        return any(_SLOT.unpack_from(self.counters, REGION * r)[0] < own
                   for r in range(self.regions))

    def release(self, ip: str) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            self._add(0, -1)
            self._add(self._bucket(ip), -1)
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
