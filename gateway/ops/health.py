"""Readiness facts shared by the processes of `sealgate serve`: each queue runner touches
its heartbeat file in the metrics directory while its event loop turns; the supervisor's
/readyz and the scrape read how old each is."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from gateway.ops.metrics import MULTIPROC_ENV

BEAT_INTERVAL = 1.0  # seconds between a runner's heartbeats
STALE_AFTER = 15.0   # a heartbeat older than this: the runner is not turning


def heartbeat_path(directory: Path, name: str) -> Path:
    return directory / f"heartbeat-{name}"


async def _beat(path: Path) -> None:
    while True:
        with contextlib.suppress(OSError):  # the directory went with a stop: nothing to tell
            path.touch()
        await asyncio.sleep(BEAT_INTERVAL)


_beating: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks


def start_heartbeat(name: str) -> None:
    """In a runner process, when the supervisor serves metrics: beat as long as the loop
    runs (a loop blocked or a process gone stops the beats)."""
    if directory := os.environ.get(MULTIPROC_ENV):
        task = asyncio.get_running_loop().create_task(
            _beat(heartbeat_path(Path(directory), name)))
        _beating.add(task)
        task.add_done_callback(_beating.discard)


def heartbeat_age(directory: Path, name: str, now: float | None = None) -> float | None:
    """Seconds since NAME's last heartbeat; None if it never beat."""
    try:
        beat = heartbeat_path(directory, name).stat().st_mtime
    except OSError:
        return None
    return max(0.0, (now if now is not None else time.time()) - beat)


def store_writable(directory: Path) -> str | None:
    """None if a file can be written and synced in the storage directory, else why not."""
    probe = directory / f".readyz-{os.getpid()}"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"ready\n")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        return f"storage.dir {directory} is not writable: {exc.strerror or exc}"
    return None
