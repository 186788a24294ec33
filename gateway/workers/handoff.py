"""What the supervisor hands a worker: the loaded config and the descriptors it inherits.

It travels pickled over the worker's stdin, written by the supervisor (same user, same
program), so the worker runs with exactly the config the supervisor validated.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
from dataclasses import dataclass
from typing import BinaryIO

from gateway.config import Config

# Signals blocked across the start of a worker, so that none arrives before the worker has
# its handlers (SIGHUP's default action would kill it); the worker unblocks them then.
STARTUP_BLOCKED = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}

_LENGTH = struct.Struct("!I")


@dataclass(frozen=True)
class Handoff:
    config: Config
    kind: str            # "smtp" | "delivery"
    index: int           # 1..n within its kind, for names and logs
    supervisor_pid: int  # the worker exits at once if its parent is already another process
    owner: str           # the supervisor's owner id; a worker's is "<owner>/<kind>-<index>:<pid>"
    lock_fd: int         # the store lock, shared: held until the last worker is gone too
    wake_rx: int         # datagram socket: a byte arrives when mail was queued
    wake_tx: int
    ready_fd: int        # pipe: the worker writes a byte once it serves, then closes it
    listen_fd: int = -1  # smtp: the bound SMTP socket, shared by every listener
    limits_fd: int = -1  # smtp: shared connection counters (gateway.workers.limits)
    policy_fd: int = -1  # smtp: the shared policy generation (gateway.workers.shared)


def encode_handoff(handoff: Handoff) -> bytes:
    data = pickle.dumps(handoff)
    return _LENGTH.pack(len(data)) + data


def read_handoff(stream: BinaryIO) -> Handoff:
    (length,) = _LENGTH.unpack(stream.read(_LENGTH.size))
    handoff = pickle.loads(stream.read(length))
    if not isinstance(handoff, Handoff):
        raise TypeError("not a worker handoff")
    return handoff


def worker_owner(handoff: Handoff, pid: int) -> str:
    """The owner id a worker writes on the rows it claims; the supervisor ends the leases of
    exactly this id when it reaps the worker."""
    return f"{handoff.owner}/{handoff.kind}-{handoff.index}:{pid}"


def report_ready(handoff: Handoff) -> None:
    """Tell the supervisor this worker serves, and let the signals held since its start in."""
    os.write(handoff.ready_fd, b"1")
    os.close(handoff.ready_fd)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STARTUP_BLOCKED)
