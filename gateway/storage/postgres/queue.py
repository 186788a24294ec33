"""The queue in PostgreSQL (tables messages, recipients, attempts; content in blob_chunks):
QueueStore of gateway/storage/protocols.py, for several nodes on one database.

Claims are leases: one statement picks the due (message, domain) groups, locks their rows
with `FOR UPDATE SKIP LOCKED` (a row another transaction holds is skipped, never waited
for) and sets owner and lease_until. Claims that cap domains take a transaction-level
advisory lock first, so the cap counts the live claims of every node, as the SQLite
version's single writer does; everything else only ever touches rows the caller owns.

Content: a message being received stays in memory until a chunk (1 MiB) is full; full
chunks are written as blob "incoming:<queue id>" (committed without waiting for the disk:
the synchronous commit of the queue rows flushes them too, the WAL being sequential).
Accepting writes what is left, renames the blob to "spool:<queue id>" and inserts the rows
in one synchronous commit: then, and only then, the message is durable and 250 may be said.
Settling, staging a pickup and queuing a report (DSN) each run in one transaction with the
removal of content no recipient needs any more.

The submit_* units run on a small thread pool, each committing on its own pooled
connection: PostgreSQL flushes the WAL of commits that arrive together at once (its own
group commit), so concurrent sessions share the disk's flushes without a writer of ours.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from gateway.queue.model import Mode, State
from gateway.storage.blob_store import BlobStoreError
from gateway.storage.ids import new_queue_id
from gateway.storage.postgres.blobs import CHUNK_SIZE, Chunk, blob_size, rechunked
from gateway.storage.postgres.connection import Cursor, Row, lock_key
from gateway.storage.postgres.pickups import PICKUP_DEBRIS_AGE, PostgresPickups
from gateway.storage.postgres.sealed import new_data_key
from gateway.storage.postgres.spool import spool_blob
from gateway.storage.protocols import (
    Attempt,
    AttemptRecord,
    EnvelopeDSN,
    IncomingMessage,
    QueuedRecipient,
    Report,
    Route,
    Settlement,
    StagedPickup,
)
from gateway.vault.epochs import epoch_of

QUEUED, DEFERRED, DELIVERING = State.QUEUED.value, State.DEFERRED.value, State.DELIVERING.value
PENDING = [QUEUED, DEFERRED, DELIVERING]  # states in which a recipient needs the content
REPLY_LIMIT = 1000
WRITERS = 4  # threads running submitted units, each on a pooled connection while it runs
# An unfinished incoming blob is debris once nothing was added to it for this long. Other
# nodes may be receiving right now, so a node's start-up (tmp_min_age 0) cannot tell a dead
# write from a live one the way a file lock lets the SQLite back-end; an SMTP session that
# added nothing for an hour is long gone (smtp.idle_timeout).
INCOMING_STALE = 3600.0
CLAIMS_LOCK = "sealgate:claims"
T = TypeVar("T")


def incoming_blob(message_id: str) -> str:
    return f"incoming:{message_id}"


class PostgresIncoming:
    """A message being received (IncomingMessage): whole chunks go to the database as they
    fill (spill), the last, partial one waits for submit_enqueue."""

    def __init__(self, storage: PostgresQueue, message_id: str) -> None:
        self.storage = storage
        self.message_id = message_id
        self.size = 0
        self._pending = bytearray()
        self.spilled = 0  # whole chunks written as the incoming blob

    @property
    def needs_spill(self) -> bool:
        return len(self._pending) >= CHUNK_SIZE

    def add(self, chunk: bytes | memoryview) -> None:
        self._pending += chunk
        self.size += len(chunk)

    def spill(self) -> None:
        """Write every whole chunk buffered (blocking: from a worker thread)."""
        if len(self._pending) < CHUNK_SIZE:
            return
        with self.storage.db.transaction() as cursor:
            # Durable with the queue rows' commit, which flushes the WAL up to itself.
            cursor.execute("SET LOCAL synchronous_commit = off")
            while len(self._pending) >= CHUNK_SIZE:
                _insert_chunk(cursor, incoming_blob(self.message_id), self.spilled,
                              bytes(self._pending[:CHUNK_SIZE]))
                del self._pending[:CHUNK_SIZE]
                self.spilled += 1

    def write_rest(self, cursor: Cursor) -> str:
        """Inside the accepting transaction: the rest written, the blob under its spool
        name; returns that name."""
        name = spool_blob(self.message_id)
        rest, self._pending = bytes(self._pending), bytearray()
        if not self.spilled:
            _insert_chunk(cursor, name, 0, rest)  # an empty message is one empty chunk
            return name
        if rest:
            _insert_chunk(cursor, incoming_blob(self.message_id), self.spilled, rest)
        # Only the name changes: PostgreSQL keeps the chunks' (out of line) data in place.
        cursor.execute("UPDATE blob_chunks SET blob = %s WHERE blob = %s",
                       (name, incoming_blob(self.message_id)))
        return name

    def discard(self) -> None:
        """Nothing of it is kept: what was written goes, off the caller's thread (an event
        loop); should that fail, clean_spool_debris removes it later."""
        self._pending = bytearray()
        if self.spilled:
            self.spilled = 0
            self.storage.run_later(self.storage.delete_blob_now, incoming_blob(self.message_id))


class PostgresQueue(PostgresPickups):
    owner: str
    lease: float
    writers: ThreadPoolExecutor

    def start_writers(self) -> None:
        self.writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="sealgate-pg-writer")
        self._later_lock = threading.Lock()

    def stop_writers(self) -> None:
        self.writers.shutdown(wait=True)

    def submit(self, work: Callable[[Cursor], T]) -> Future[T]:
        """WORK in a transaction of its own, on a writer thread."""
        def run() -> T:
            with self.db.transaction() as cursor:
                return work(cursor)
        return self.writers.submit(run)

    def run_later(self, work: Callable[[str], None], arg: str) -> None:
        """Best-effort clean-up off the caller's thread; failures are left to the sweep."""
        def run() -> None:
            try:
                work(arg)
            except Exception:  # noqa: BLE001, S110 - clean_spool_debris removes it later
                pass
        try:
            self.writers.submit(run)
        except RuntimeError:  # closing: the sweep removes it
            pass

    def delete_blob_now(self, name: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM blob_chunks WHERE blob = %s", (name,))

    # -- accepting ---------------------------------------------------------------------

    def incoming_spool(self, message_id: str) -> PostgresIncoming:
        return PostgresIncoming(self, message_id)

    def submit_enqueue(self, sender: str, routes: list[Route], spool: IncomingMessage,
                       client: str = "", smtputf8: bool = False,
                       dsn: EnvelopeDSN | None = None, requiretls: bool = False,
                       tls_optional: bool = False) -> Future[str]:
        if not isinstance(spool, PostgresIncoming):
            raise TypeError("submit_enqueue takes a spool from this storage's incoming_spool")

        def rows(cursor: Cursor) -> str:
            spool.write_rest(cursor)
            self.insert_queue_rows(cursor, spool.message_id, sender, routes, spool.size,
                                   client, smtputf8, dsn, requiretls, tls_optional)
            return spool.message_id

        done = self.submit(rows)
        done.add_done_callback(lambda f: spool.discard() if f.exception() else None)
        return done

    def enqueue(self, sender: str, routes: list[Route], content: bytes | Iterable[Chunk],
                client: str = "", message_id: str | None = None, smtputf8: bool = False,
                dsn: EnvelopeDSN | None = None, requiretls: bool = False,
                tls_optional: bool = False) -> str:
        spool = self.incoming_spool(message_id or new_queue_id())
        try:
            for chunk in [content] if isinstance(content, bytes) else content:
                spool.add(chunk)
                if spool.needs_spill:  # a large message is never whole in memory
                    spool.spill()
        except BaseException:
            spool.discard()
            raise
        return self.submit_enqueue(sender, routes, spool, client, smtputf8, dsn, requiretls,
                                   tls_optional).result()

    def read_spool_chunks(self, message_id: str) -> Iterator[bytes]:
        # Looked up before the first chunk is asked for: a missing one fails the call itself.
        if blob_size(self.db.fetch_binary, spool_blob(message_id)) is None:
            raise FileNotFoundError(f"no spooled message {message_id}")
        return self._spool_chunks(message_id)

    # -- claims ------------------------------------------------------------------------

    def claim_due(self, limit: int = 500, per_domain: int | None = None
                  ) -> list[QueuedRecipient]:
        with self.db.transaction() as cursor:
            return self._claim_rows(cursor, limit, per_domain)

    def submit_claim(self, limit: int = 500, per_domain: int | None = None
                     ) -> Future[list[QueuedRecipient]]:
        return self.submit(lambda cursor: self._claim_rows(cursor, limit, per_domain))

    def _claim_rows(self, cursor: Cursor, limit: int, per_domain: int | None
                    ) -> list[QueuedRecipient]:
        if per_domain is not None:
            lock_key(cursor, CLAIMS_LOCK)  # the cap counts claims committed before this one
        now = self.clock()
        params = {"me": self.owner, "now": now, "until": now + self.lease, "groups": limit,
                  "per_domain": per_domain if per_domain is not None else 2 ** 31,
                  "queued": QUEUED, "deferred": DEFERRED, "delivering": DELIVERING}
        rows = cursor.execute(_CLAIM_SQL, params).fetchall()
        claimed = [_queued_recipient(r) for r in rows]
        claimed.sort(key=lambda i: (i.message_id, i.domain, i.rcpt))
        return claimed

    def still_claimed(self, message_id: str, rcpts: list[str]) -> list[str]:
        claimed = {r["rcpt"] for r in self.db.query(
            "SELECT rcpt FROM recipients WHERE message_id = %s AND state = 'delivering'"
            " AND claimed_by = %s", (message_id, self.owner))}
        return [r for r in rcpts if r in claimed]

    def renew_leases(self) -> int:
        with self.db.transaction() as cursor:
            return self._renew_rows(cursor)

    def submit_renew_leases(self) -> Future[int]:
        return self.submit(self._renew_rows)

    def _renew_rows(self, cursor: Cursor) -> int:
        # The state written out, not a parameter: the index of claims (recipients_claimed)
        # covers that state only, and a plan made for any parameter could not use it.
        cursor.execute("UPDATE recipients SET lease_until = %s WHERE seq IN (SELECT seq"
                       " FROM recipients WHERE state = 'delivering' AND claimed_by = %s"
                       + _IN_ORDER + ")", (self.clock() + self.lease, self.owner))
        return cursor.rowcount

    def release_claims(self, message_id: str, rcpts: list[str]) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE recipients SET state = %s, claimed_by = NULL,"
                           " lease_until = NULL WHERE message_id = %s AND rcpt = ANY(%s)"
                           " AND state = %s AND claimed_by = %s",
                           (QUEUED, message_id, list(rcpts), DELIVERING, self.owner))

    def expire_leases(self, owner: str) -> int:
        if not owner:
            return 0
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE recipients SET lease_until = 0 WHERE seq IN (SELECT seq"
                           " FROM recipients WHERE state = %s AND (claimed_by = %s"
                           " OR left(claimed_by, %s) = %s)" + _IN_ORDER + ")",
                           (DELIVERING, owner, len(owner) + 1, owner + "/"))
            return cursor.rowcount

    # -- outcomes ----------------------------------------------------------------------

    def settle(self, message_id: str, replies: dict[str, str], state: str,
               next_attempt: float | None = None, report: Report | None = None) -> list[str]:
        settlement = Settlement(message_id, replies, state, next_attempt, report)
        [settled] = self.submit_settlements([settlement]).result()
        return settled

    def submit_settlements(self, settlements: Sequence[Settlement],
                           attempts: Sequence[AttemptRecord] = ()
                           ) -> Future[list[list[str]]]:
        def rows(cursor: Cursor) -> list[list[str]]:
            # Rows are locked in (message, recipient) order, as every statement here that
            # locks several does: two transactions never wait for each other in a circle.
            order = sorted(range(len(settlements)), key=lambda n: settlements[n].message_id)
            settled: list[list[str]] = [[] for _ in settlements]
            for n in order:
                settled[n] = self._settle_rows(cursor, settlements[n])
            _insert_attempts(cursor, attempts)
            for message_id in sorted({s.message_id for s in settlements}):
                self._release_content_if_done(cursor, message_id)
            return settled
        return self.submit(rows)

    def _settle_rows(self, cursor: Cursor, s: Settlement, report_id: str | None = None
                     ) -> list[str]:
        """S inside CURSOR's transaction, only for the recipients this owner holds, and its
        report queued (under REPORT_ID or a new id) when any was settled."""
        now = self.clock()
        settled: list[str] = []
        for rcpt in sorted(s.replies):  # (message, recipient) order: see submit_settlements
            cursor.execute(_SETTLE_SQL, (s.state, s.replies[rcpt][:REPLY_LIMIT], now,
                                         s.next_attempt, s.message_id, rcpt, DELIVERING,
                                         self.owner))
            if cursor.rowcount:
                settled.append(rcpt)
        if settled and s.report is not None:
            self._queue_report(cursor, s.report, report_id or new_queue_id())
        return [r for r in s.replies if r in settled]

    def _queue_report(self, cursor: Cursor, report: Report, report_id: str) -> None:
        for seq, piece in enumerate(rechunked([report.content]) if report.content else [b""]):
            _insert_chunk(cursor, spool_blob(report_id), seq, piece)
        self.insert_queue_rows(cursor, report_id, report.sender, [report.route],
                               len(report.content))

    def _release_content_if_done(self, cursor: Cursor, message_id: str) -> None:
        # Transactions settling recipients of one message take turns here: each one's check
        # then sees what the one before committed, so the last to settle removes the content
        # (two at once would each see the other's recipient pending and keep it). Every
        # recipient lock of the transaction is taken before this one: no circle of waits.
        cursor.execute("SELECT 1 FROM messages WHERE id = %s FOR NO KEY UPDATE", (message_id,))
        cursor.execute("DELETE FROM blob_chunks WHERE blob = %s AND NOT EXISTS (SELECT 1"
                       " FROM recipients WHERE message_id = %s AND state = ANY(%s))",
                       (spool_blob(message_id), message_id, PENDING))

    def record_attempts(self, message_id: str, attempts: Sequence[Attempt]) -> None:
        with self.db.transaction() as cursor:
            _insert_attempts(cursor, [AttemptRecord(message_id, a) for a in attempts])

    def submit_attempts(self, attempts: Sequence[AttemptRecord]) -> Future[None]:
        return self.submit(lambda cursor: _insert_attempts(cursor, attempts))

    def stage_pickup(self, staged: StagedPickup) -> str | None:
        """One transaction: the recipient settled (only while this owner holds it: else
        nothing is stored), the message encrypted into its pickup blob, the notification
        queued, and the plaintext copy gone once no recipient needs it."""
        keys = new_data_key(self.keys, staged.pickup_id, staged.rcpt,  # before: own reads
                            epoch_of(staged.expires, self.clock()))
        stored = Settlement(staged.message_id, {staged.rcpt: staged.reply}, State.PICKUP.value)
        with self.db.transaction() as cursor:
            if not self._settle_rows(cursor, stored):
                return None
            self._insert_pickup(cursor, keys, staged.pickup_id, staged.message_id,
                                staged.sender, staged.rcpt, staged.expires)
            self._queue_report(cursor, staged.notification, new_queue_id())
            if staged.receipt is not None:
                self._queue_report(cursor, staged.receipt, new_queue_id())
            self._release_content_if_done(cursor, staged.message_id)
        return staged.pickup_id

    # -- admin -------------------------------------------------------------------------

    def next_due_time(self) -> float | None:
        [row] = self.db.query("SELECT min(next_attempt) AS due FROM recipients"
                              " WHERE state = ANY(%s)", ([QUEUED, DEFERRED],))
        return None if row["due"] is None else float(row["due"])

    def flush(self) -> int:
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE recipients SET next_attempt = %s WHERE state = ANY(%s)",
                           (self.clock(), [QUEUED, DEFERRED]))
            return cursor.rowcount

    def delete_message(self, message_id: str) -> bool:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM recipients WHERE message_id = %s", (message_id,))
            cursor.execute("DELETE FROM messages WHERE id = %s", (message_id,))
            found = cursor.rowcount
            cursor.execute("DELETE FROM blob_chunks WHERE blob = ANY(%s)",
                           ([spool_blob(message_id), incoming_blob(message_id)],))
        return bool(found)

    def prune_history(self, settled_before: float) -> int:
        with self.db.transaction() as cursor:
            cursor.execute(
                "SELECT id FROM messages m WHERE received < %(cutoff)s AND NOT EXISTS ("
                " SELECT 1 FROM recipients r WHERE r.message_id = m.id"
                " AND (r.state = ANY(%(pending)s) OR r.updated >= %(cutoff)s))"
                " ORDER BY id FOR UPDATE SKIP LOCKED",
                {"cutoff": settled_before, "pending": PENDING})
            finished = [row["id"] for row in cursor.fetchall()]
            if finished:
                cursor.execute("DELETE FROM attempts WHERE message_id = ANY(%s)", (finished,))
                cursor.execute("DELETE FROM recipients WHERE message_id = ANY(%s)", (finished,))
                cursor.execute("DELETE FROM messages WHERE id = ANY(%s)", (finished,))
        return len(finished)

    def clean_spool_debris(self, min_age: float = 60.0, tmp_min_age: float = 0.0) -> int:
        """Unfinished incoming blobs idle for INCOMING_STALE (or TMP_MIN_AGE if longer), and
        content no pending recipient needs, first written MIN_AGE ago or earlier (by the
        database's clock: the same for every node); and pickup objects of an external store
        that no row names (clean_pickup_debris)."""
        with self.db.transaction() as cursor:
            cursor.execute(_DEBRIS_SQL, {"min_age": min_age,
                                         "tmp_min_age": max(tmp_min_age, INCOMING_STALE),
                                         "pending": PENDING})
            removed = len({r["blob"] for r in cursor.fetchall()})
        try:  # and with pickups in an external store, its objects no row names
            removed += self.clean_pickup_debris(max(min_age, PICKUP_DEBRIS_AGE))
        except BlobStoreError:
            pass  # the store is unreachable now: the next sweep tries again
        return removed


# -- statements ---------------------------------------------------------------------------


def _insert_chunk(cursor: Cursor, name: str, seq: int, piece: bytes) -> None:
    cursor.execute("INSERT INTO blob_chunks (blob, seq, data) VALUES (%s, %s, %b)",
                   (name, seq, piece))


def _insert_attempts(cursor: Cursor, attempts: Sequence[AttemptRecord]) -> None:
    if not attempts:
        return
    cursor.executemany(
        "INSERT INTO attempts (message_id, rcpt, at, host, address, reply, tls_version,"
        " cipher, cert_subject, cert_issuer, verified, reason)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [(r.message_id, a.rcpt, a.at, a.host, a.address, a.reply[:REPLY_LIMIT], a.tls_version,
          a.cipher, a.cert_subject, a.cert_issuer, a.verified, a.reason)
         for r in attempts for a in [r.attempt]])


def _queued_recipient(row: Row) -> QueuedRecipient:
    return QueuedRecipient(row["message_id"], row["sender"], row["rcpt"], row["domain"],
                           row["confidential"], Mode(row["mode"]), row["attempts"],
                           row["received"], row["client"] or "", row["updated"],
                           row["reason"] or "", row["smtputf8"], row["dsn_notify"],
                           row["dsn_orcpt"], row["receipt"],
                           EnvelopeDSN(row["dsn_ret"], row["dsn_envid"]), row["requiretls"],
                           row["tls_optional"])


# One statement claims (see claim_due): groups (message, domain) of due rows, and of rows
# whose lease ran out, capped per domain by the live leases of every owner, oldest first;
# then their rows are locked, each checked again as it is (a row changed meanwhile is
# judged by its new version; one that another transaction holds is skipped), and taken.
_CLAIM_SQL = """
WITH busy AS (
    SELECT domain, count(DISTINCT message_id) AS groups FROM recipients
     WHERE state = %(delivering)s AND lease_until >= %(now)s GROUP BY domain),
due AS (
    SELECT seq, message_id, domain FROM recipients
     WHERE state IN (%(queued)s, %(deferred)s) AND next_attempt <= %(now)s
        OR state = %(delivering)s AND coalesce(lease_until, 0) < %(now)s
           AND coalesce(claimed_by, '') <> %(me)s),
ranked AS (
    SELECT seq, message_id, domain,
           dense_rank() OVER (PARTITION BY domain ORDER BY message_id) AS nth_in_domain
      FROM due),
allowed AS (
    SELECT r.seq, dense_rank() OVER (ORDER BY r.message_id, r.domain) AS nth_group
      FROM ranked r LEFT JOIN busy b ON b.domain = r.domain
     WHERE r.nth_in_domain + coalesce(b.groups, 0) <= %(per_domain)s),
locked AS (
    SELECT r.seq FROM recipients r JOIN allowed a ON a.seq = r.seq
     WHERE a.nth_group <= %(groups)s
       AND (r.state IN (%(queued)s, %(deferred)s) AND r.next_attempt <= %(now)s
            OR r.state = %(delivering)s AND coalesce(r.lease_until, 0) < %(now)s
               AND coalesce(r.claimed_by, '') <> %(me)s)
       FOR UPDATE OF r SKIP LOCKED)
UPDATE recipients r SET state = %(delivering)s, claimed_by = %(me)s, lease_until = %(until)s
  FROM locked l, messages m
 WHERE r.seq = l.seq AND m.id = r.message_id
RETURNING r.message_id, r.rcpt, r.domain, r.confidential, r.mode, r.attempts, r.updated,
          r.reason, m.sender, m.received, m.client, m.smtputf8, r.dsn_notify, r.dsn_orcpt,
          r.receipt, m.dsn_ret, m.dsn_envid, m.requiretls, m.tls_optional
"""

# Locks the rows a subquery selects in one order (see submit_settlements).
_IN_ORDER = " ORDER BY message_id, rcpt FOR UPDATE"

_SETTLE_SQL = ("UPDATE recipients SET state = %s, last_reply = %s, updated = %s,"
               " attempts = attempts + 1, next_attempt = coalesce(%s, next_attempt),"
               " claimed_by = NULL, lease_until = NULL"
               " WHERE message_id = %s AND rcpt = %s AND state = %s AND claimed_by = %s")

# Content nobody needs: incoming blobs nothing was added to for a while, and spool blobs
# without a pending recipient, by the time their first chunk was written.
_DEBRIS_SQL = """
WITH now AS (SELECT extract(epoch FROM clock_timestamp())::double precision AS t),
stale AS (
    SELECT blob FROM blob_chunks, now WHERE blob LIKE 'incoming:%%'
     GROUP BY blob, now.t HAVING max(written) <= now.t - %(tmp_min_age)s
    UNION
    SELECT c.blob FROM blob_chunks c, now
     WHERE c.blob LIKE 'spool:%%' AND c.seq = 0 AND c.written <= now.t - %(min_age)s
       AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = substr(c.blob, 7)
                        AND r.state = ANY(%(pending)s)))
DELETE FROM blob_chunks c USING stale s WHERE c.blob = s.blob RETURNING c.blob
"""

