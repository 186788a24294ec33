"""The spool in the database and the queue rows written with it: what storing a pickup or a
reply needs from the queue (the message's bytes, its messages and recipients rows).
Accepting, claiming, renewing and settling are the queue part's (queue.py).

A spooled message is blob "spool:<queue id>" in blob_chunks. Callers that look for a spool
copy that is gone get FileNotFoundError, as from the SQLite back-end's spool files."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

from gateway.queue.model import State
from gateway.storage.postgres.blobs import Chunk, blob_chunks, open_blob_file, write_blob
from gateway.storage.postgres.connection import Cursor, FetchBinary, PostgresPart
from gateway.storage.protocols import EnvelopeDSN
from gateway.storage.store import Route, new_queue_id


def spool_blob(message_id: str) -> str:
    return f"spool:{message_id}"


class PostgresSpool(PostgresPart):
    def spool_stream(self, chunks: Iterable[Chunk]) -> tuple[str, int]:
        """Write CHUNKS (consumed once, never held whole) to the spool under a new queue id;
        returns the id and the size written."""
        message_id = new_queue_id()
        with self.db.transaction() as cursor:
            size = write_blob(cursor, spool_blob(message_id), chunks)
        return message_id, size

    def open_spool_file(self, message_id: str, fetch: FetchBinary | None = None) -> BinaryIO:
        """The spooled message as a seekable binary file, read a chunk at a time (through
        FETCH: fetch_in(cursor) inside a transaction)."""
        try:
            return open_blob_file(fetch or self.db.fetch_binary, spool_blob(message_id))[0]
        except KeyError:
            raise FileNotFoundError(f"no spooled message {message_id}") from None

    def read_spool(self, message_id: str) -> bytes:
        return b"".join(self._spool_chunks(message_id))

    def read_spool_headers(self, message_id: str) -> bytes:
        """Only the header section of a spooled message: never the (maybe huge) body."""
        lines = []
        with self.open_spool_file(message_id) as spool:
            for line in spool:
                if line in (b"\r\n", b"\n"):
                    break
                lines.append(line)
        return b"".join(lines)

    def insert_queue_rows(self, cursor: Cursor, message_id: str, sender: str,
                          routes: list[Route], size: int, client: str = "",
                          smtputf8: bool = False, dsn: EnvelopeDSN | None = None,
                          requiretls: bool = False, tls_optional: bool = False) -> None:
        now = self.clock()
        dsn = dsn or EnvelopeDSN()
        cursor.execute("INSERT INTO messages (id, sender, received, size, spool, client,"
                       " smtputf8, dsn_ret, dsn_envid, requiretls, tls_optional)"
                       " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                       (message_id, sender, now, size, spool_blob(message_id), client,
                        smtputf8, dsn.ret, dsn.envid, requiretls, tls_optional))
        cursor.executemany(
            "INSERT INTO recipients (message_id, rcpt, domain, confidential, mode, reason,"
            " state, attempts, next_attempt, last_reply, updated, dsn_notify, dsn_orcpt,"
            " receipt) VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s, '', %s, %s, %s, %s)",
            [(message_id, r.rcpt, r.domain, r.confidential, r.mode, r.reason, State.QUEUED.value,
              now, now, r.notify, r.orcpt, r.receipt) for r in routes])

    def _spool_chunks(self, message_id: str) -> Iterator[bytes]:
        try:
            yield from blob_chunks(self.db.fetch_binary, spool_blob(message_id))
        except KeyError:
            raise FileNotFoundError(f"no spooled message {message_id}") from None

