"""Group commit: one writer thread makes the spool files and queue rows of every message
waiting at that moment durable together, so concurrent SMTP sessions share one directory
fsync and one commit instead of paying for their own, and no fsync or commit runs on an
event loop.

A unit of work is an incoming spool file plus a function that inserts its rows. The writer
takes everything waiting, finishes and fsyncs each file and renames it into place, fsyncs
the spool directory once, runs every unit's rows in one transaction (each in a savepoint,
so one unit's failure does not fail the others) and commits once; then it resolves the
units' futures. A caller may say 250 when its future resolves: by then the file and its
rows are on disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.storage.durable import fsync_dir

log = logging.getLogger("sealgate.store")
Chunk = bytes | memoryview
Transaction = Callable[[], AbstractContextManager[sqlite3.Connection]]
MAX_BATCH = 256  # units per commit: bounds the latency of the last one in a burst
# The file fsyncs of a batch run side by side: the disk and the journal take concurrent
# flushes together, where one after another each pays a full round trip (measured: one
# thread fsyncing 20 files in turn was half as fast as 20 threads each fsyncing its own).
FSYNC_THREADS = 16


class IncomingSpool:
    """A spool file being received: kept in memory while small, spilled to its `.tmp` file
    once MEMORY_LIMIT octets wait, made durable and renamed to its final name by the writer.
    Not thread-safe: one owner at a time (the SMTP session, then the writer)."""

    def __init__(self, final: Path, memory_limit: int = 1 << 20) -> None:
        self.final = final
        self.tmp = final.with_name(final.name + ".tmp")
        self.memory_limit = memory_limit
        self.size = 0
        self._chunks: list[Chunk] = []
        self._buffered = 0
        self._fd: int | None = None

    def add(self, chunk: Chunk) -> None:
        """Append CHUNK (memory only: cheap on an event loop)."""
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self.size += len(chunk)

    @property
    def needs_spill(self) -> bool:
        return self._buffered >= self.memory_limit

    def spill(self) -> None:
        """Write what is buffered to the .tmp file (blocking: call from a worker thread)."""
        if self._fd is None:
            self._fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        chunks, self._chunks, self._buffered = self._chunks, [], 0
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._fd, view):]

    def make_durable(self) -> None:
        """Write the rest, fsync and close the file, rename it into place (the directory
        fsync is the caller's, once for many files)."""
        self.spill()
        assert self._fd is not None
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.tmp, self.final)

    def discard(self) -> None:
        """Leave nothing behind (best effort: a start-up sweep removes what is left)."""
        self._chunks, self._buffered = [], 0
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        for path in (self.tmp, self.final):
            with contextlib.suppress(OSError):
                path.unlink()


@dataclass
class _Unit:
    spool: IncomingSpool | None
    rows: Callable[[sqlite3.Connection], Any]
    # Runs in the writer once the unit is committed, before its future resolves: file
    # clean-up that must follow the commit (a spool no recipient needs any more).
    after: Callable[[Any], None] | None = None
    future: Future[Any] = field(default_factory=Future)


class GroupCommitter:
    """The writer thread of one store. submit() from any thread; close() drains and stops."""

    def __init__(self, spool_dir: Path, transaction: Transaction) -> None:
        self.spool_dir = spool_dir
        self.transaction = transaction
        self._waiting: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sealgate-group-commit",
                                        daemon=True)
        self._fsyncs = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="sealgate-fsync")
        self._started = False
        self._start_lock = threading.Lock()
        self.batches = 0  # commits made (for tests and metrics)

    def submit(self, spool: IncomingSpool | None,
               rows: Callable[[sqlite3.Connection], Any],
               after: Callable[[Any], None] | None = None) -> Future[Any]:
        """Make SPOOL durable and run ROWS in a committed transaction; the future holds ROWS'
        result, or the exception that kept this unit from being committed (its spool file
        is removed then). AFTER(result) runs in the writer after the commit, before the
        future resolves; its failure is logged, never the unit's."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("the group-commit writer cannot wait for itself")
        unit = _Unit(spool, rows, after)
        self._ensure_started()
        self._waiting.put(unit)
        return unit.future

    def close(self) -> None:
        if self._started:
            self._waiting.put(None)
            self._thread.join()
        self._fsyncs.shutdown()

    def _ensure_started(self) -> None:
        with self._start_lock:
            if not self._started:
                self._thread.start()
                self._started = True

    def _run(self) -> None:
        while True:
            batch, stop = self._take()
            if batch:
                try:
                    self._commit(batch)
                except BaseException as exc:  # noqa: BLE001 - never leave a caller waiting
                    log.error("group commit failed: %s: %s", type(exc).__name__, exc)
                    _fail([u for u in batch if not u.future.done()], exc)
            if stop:
                return

    def _take(self) -> tuple[list[_Unit], bool]:
        """Everything waiting now (at least one unit, or the stop)."""
        first = self._waiting.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                unit = self._waiting.get_nowait()
            except queue.Empty:
                break
            if unit is None:
                return batch, True
            batch.append(unit)
        return batch, False

    def _commit(self, batch: list[_Unit]) -> None:
        spooled = [unit for unit in batch if unit.spool is not None]
        if len(spooled) > 1:
            ok = dict(zip(map(id, spooled), self._fsyncs.map(self._write_spool, spooled),
                          strict=True))
        else:
            ok = {id(unit): self._write_spool(unit) for unit in spooled}
        written = [unit for unit in batch if ok.get(id(unit), True)]
        if any(unit.spool is not None for unit in written):
            try:
                fsync_dir(self.spool_dir)
            except BaseException as exc:  # noqa: BLE001 - each caller gets the failure
                _fail(written, exc)
                return
        try:
            with self.transaction() as db:
                results = [_in_savepoint(db, unit) for unit in written]
        except BaseException as exc:  # noqa: BLE001 - the commit failed for every unit
            _fail(written, exc)
            return
        self.batches += 1
        for unit, (succeeded, value) in zip(written, results, strict=True):
            if succeeded:
                _run_after(unit, value)
                unit.future.set_result(value)
            else:
                _fail([unit], value)

    @staticmethod
    def _write_spool(unit: _Unit) -> bool:
        if unit.spool is None:
            return True
        try:
            unit.spool.make_durable()
        except BaseException as exc:  # noqa: BLE001 - a full disk fails this unit only
            _fail([unit], exc)
            return False
        return True


def _in_savepoint(db: sqlite3.Connection, unit: _Unit) -> tuple[bool, Any]:
    db.execute("SAVEPOINT unit")
    try:
        value = unit.rows(db)
    except Exception as exc:  # noqa: BLE001 - this unit only; the batch goes on
        db.execute("ROLLBACK TO unit")
        db.execute("RELEASE unit")
        return False, exc
    db.execute("RELEASE unit")
    return True, value


def _run_after(unit: _Unit, value: Any) -> None:
    if unit.after is None:
        return
    try:
        unit.after(value)
    except Exception as exc:  # noqa: BLE001 - the unit is committed; clean-up is best effort
        log.warning("after a group commit: %s: %s", type(exc).__name__, exc)


def _fail(units: list[_Unit], exc: BaseException) -> None:
    for unit in units:
        if unit.spool is not None:
            unit.spool.discard()
        if not unit.future.done():
            unit.future.set_exception(exc)
