"""The spool: each queued message's content as one file, `<queue id>.eml`, in one directory.

A file is written durably (fsync'ed, renamed into place, directory fsync'ed) before its
queue rows are committed; it is removed once no recipient needs it. What a crash or a full
disk leaves (`.tmp` files, files without pending rows) is swept by clean_debris.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from gateway.storage.durable import fsync_dir, remove_durably, write_durably
from gateway.storage.group_commit import Chunk, IncomingSpool

READ_CHUNK = 1 << 16


class SpoolFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, message_id: str) -> Path:
        return self.directory / f"{message_id}.eml"

    def incoming(self, message_id: str) -> IncomingSpool:
        """A file to fill with a message as it arrives; the group-commit writer finishes it."""
        return IncomingSpool(self.path(message_id))

    def write(self, message_id: str, chunks: Iterable[Chunk]) -> int:
        """Write CHUNKS durably under MESSAGE_ID; the size. A failure (a full disk) leaves
        no half-written debris."""
        path = self.path(message_id)
        try:
            return write_durably(path, chunks)
        except BaseException:
            with contextlib.suppress(OSError):
                remove_durably(path.with_name(path.name + ".tmp"))
            raise

    def read(self, message_id: str) -> bytes:
        return self.path(message_id).read_bytes()

    def chunks(self, message_id: str) -> Iterator[bytes]:
        # Opened before the first chunk is asked for: a missing file fails the call itself.
        source = self.path(message_id).open("rb")
        return _chunks_of(source)

    def headers(self, message_id: str) -> bytes:
        """Only the header section of a spooled message: never the (maybe huge) body."""
        lines = []
        with self.path(message_id).open("rb") as spool:
            for line in spool:
                if line in (b"\r\n", b"\n"):
                    break
                lines.append(line)
        return b"".join(lines)

    def exists(self, message_id: str) -> bool:
        return self.path(message_id).exists()

    def remove(self, message_id: str) -> None:
        """A file no recipient needs any more. No fsync: the rows say the message is done,
        and should the removal be lost in a crash, clean_debris removes the file."""
        with contextlib.suppress(FileNotFoundError):
            self.path(message_id).unlink()

    def remove_durably(self, message_id: str) -> None:
        remove_durably(self.path(message_id))

    def discard(self, message_id: str) -> None:
        """Remove a file that never got its queue rows (best effort: debris is also cleaned
        at start-up)."""
        with contextlib.suppress(OSError):
            remove_durably(self.path(message_id))

    def clean_debris(self, pending: set[str], min_age: float, tmp_min_age: float) -> int:
        """Remove `.tmp` files older than TMP_MIN_AGE and files of messages not in PENDING
        older than MIN_AGE; how many."""
        now = time.time()  # file times are wall-clock, whatever clock the store runs on
        removed = 0
        for path in self.directory.iterdir():
            if path.name.endswith(".tmp"):
                stale = tmp_min_age
            elif path.suffix == ".eml" and path.stem not in pending:
                stale = min_age
            else:
                continue
            try:
                if now - path.stat().st_mtime >= stale:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            fsync_dir(self.directory)
        return removed


def _chunks_of(source: BinaryIO) -> Iterator[bytes]:
    try:
        while chunk := source.read(READ_CHUNK):
            yield chunk
    finally:
        source.close()
