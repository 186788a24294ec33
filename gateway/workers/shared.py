"""A number shared by the supervisor and its workers: one 8-byte memfd they all map.

Only the supervisor writes it; an aligned 8-byte store is atomic on the platforms we run
on, so readers need no lock.
"""

from __future__ import annotations

import mmap
import os
import struct

_VALUE = struct.Struct("=Q")


def shared_number(name: str) -> int:
    """A new, zeroed, inheritable shared number; its descriptor."""
    fd = os.memfd_create(name, 0)  # no MFD_CLOEXEC: workers inherit it
    os.ftruncate(fd, mmap.PAGESIZE)
    return fd


class SharedGeneration:
    """The policy generation: bumped by the supervisor after each successful reload."""

    def __init__(self, fd: int) -> None:
        self.memory = mmap.mmap(fd, mmap.PAGESIZE)

    @property
    def value(self) -> int:
        return int(_VALUE.unpack_from(self.memory, 0)[0])

    def bump(self) -> None:
        _VALUE.pack_into(self.memory, 0, self.value + 1)
