"""The store: SQLite queue and metadata plus files (spool, encrypted blobs, keys) under one
directory. This is the one interface the flow uses, so another back-end can replace it.

The queue on disk is the source of truth: a message is acknowledged only after its spool
file is fsync'ed and its rows are committed with synchronous=FULL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.queue.model import Mode, State
from gateway.storage.durable import fsync_dir, remove_durably, write_durably
from gateway.storage.group_commit import GroupCommitter, IncomingSpool
from gateway.storage.schema import migrate
from gateway.storage.sqlite.audit import SQLiteAudit, SQLiteQueueInspection
from gateway.storage.sqlite.knowledge import SQLiteKnowledge
from gateway.storage.sqlite.pickups import SQLitePickups
from gateway.storage.sqlite.portal import SQLitePortal
from gateway.vault import crypto

Clock = Callable[[], float]
# One row of delivery history: message_id, rcpt, at, host, address, reply, tls_version,
# cipher, cert_subject, cert_issuer, verified, reason.
AttemptRow = tuple[object, ...]
Chunk = bytes | memoryview

QUEUED, DEFERRED, DELIVERED, PICKUP, BOUNCED = (State.QUEUED, State.DEFERRED, State.DELIVERED,
                                               State.PICKUP, State.BOUNCED)
DELIVERING = State.DELIVERING
PENDING = (QUEUED, DEFERRED, DELIVERING)  # states in which a recipient still needs the spool
DEFAULT_LEASE = 600.0  # seconds a claim holds unless its owner renews it


@dataclass(frozen=True)
class Route:
    """How one recipient is to be handled, decided at accept time by the policy."""

    rcpt: str
    confidential: bool = False
    mode: str = "opportunistic"
    reason: str = ""

    @property
    def domain(self) -> str:
        return self.rcpt.rpartition("@")[2].lower()


@dataclass(frozen=True)
class QueuedRecipient:
    message_id: str
    sender: str
    rcpt: str
    domain: str
    confidential: bool
    mode: Mode
    attempts: int
    received: float
    client: str = ""      # the SMTP client's address; empty for mail Sealgate wrote itself
    updated: float = 0.0  # time of the previous attempt
    reason: str = ""      # why the route was chosen; for mail Sealgate wrote, what it is
    smtputf8: bool = False  # received with SMTPUTF8: the next hop must offer it (RFC 6531)


@dataclass(frozen=True)
class Report:
    """Mail Sealgate writes about a message (a DSN, a postmaster copy), queued together with
    the outcome it reports so that neither exists without the other."""

    sender: str
    route: Route
    content: bytes


@dataclass(frozen=True)
class Settlement:
    """One outcome to record: STATE for the recipients in REPLIES (each with its reply),
    and REPORT queued with it. REPORT_ID: the report's spool file, written before."""

    message_id: str
    replies: dict[str, str]
    state: str
    next_attempt: float | None = None
    report: Report | None = None
    report_id: str | None = None


@dataclass(frozen=True)
class Pickup:
    id: str
    message_id: str
    sender: str
    recipient: str
    created: float
    expires: float
    read_at: float | None
    size: int
    kind: str = "message"          # "message" from the gateway, "reply" written in the portal
    thread_id: str | None = None   # for a reply: the message it answers
    replied_at: float | None = None

    @property
    def state(self) -> str:
        if self.replied_at:
            return "replied"
        return "read" if self.read_at else "unread"


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


class Store(SQLitePortal, SQLitePickups, SQLiteKnowledge, SQLiteAudit, SQLiteQueueInspection):
    """The SQLite + files back-end of every storage Protocol (gateway/storage/protocols.py):
    the queue here, the other concerns in the parts under gateway/storage/sqlite/."""

    def __init__(self, directory: Path, clock: Clock = time.time, owner: str | None = None,
                 lease: float = DEFAULT_LEASE) -> None:
        self.directory = directory
        self.clock = clock
        self.owner = owner or new_owner_id()  # written on the rows this process claims
        self.lease = lease
        self.spool_dir = directory / "spool"
        self.blob_dir = directory / "blobs"
        for path in (directory, self.spool_dir, self.blob_dir):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.keys = crypto.KeyRing(directory / "keys")
        self.keys.ensure()
        self._lock = threading.RLock()
        self.db = sqlite3.connect(directory / "sealgate.db", check_same_thread=False,
                                  isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       "secure_delete=ON", "busy_timeout=30000"):
            self.db.execute(f"PRAGMA {pragma}")
        with self._lock:
            migrate(self.db)
        # Reads outside a transaction use a connection of their own: in WAL mode they need
        # not wait while the writer thread holds the write connection through a commit
        # and its fsync (an event loop reading the MTA-STS cache would stall for it).
        self._reader = sqlite3.connect(directory / "sealgate.db", check_same_thread=False,
                                       isolation_level=None, timeout=30)
        self._reader.row_factory = sqlite3.Row
        for pragma in ("foreign_keys=ON", "secure_delete=ON", "busy_timeout=30000"):
            self._reader.execute(f"PRAGMA {pragma}")
        self._read_lock = threading.Lock()
        self._writing = threading.local()  # .active: this thread is inside transaction()
        self.committer = GroupCommitter(self.spool_dir, self.transaction)

    def close(self) -> None:
        self.committer.close()
        with self._lock:
            self.db.close()
        with self._read_lock:
            self._reader.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            outer = getattr(self._writing, "active", False)
            self._writing.active = True
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            finally:
                self._writing.active = outer

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        if getattr(self._writing, "active", False):  # sees this transaction's own writes
            with self._lock:
                return self.db.execute(sql, params).fetchall()
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    # -- queue -------------------------------------------------------------------------

    def spool_path(self, message_id: str) -> Path:
        return self.spool_dir / f"{message_id}.eml"

    def enqueue(self, sender: str, routes: list[Route], content: bytes | Sequence[Chunk],
                client: str = "", message_id: str | None = None, smtputf8: bool = False) -> str:
        """Durably queue CONTENT (bytes, or chunks written in order) for ROUTES; returns the
        queue id once it is safe to say 250. MESSAGE_ID: one chosen before (the SMTP side
        names it in the Received header); a failure leaves no spool file behind."""
        message_id = message_id or new_queue_id()
        spool = self.incoming_spool(message_id)
        for chunk in [content] if isinstance(content, bytes) else content:
            spool.add(chunk)
        return self.submit_enqueue(sender, routes, spool, client, smtputf8).result()

    def incoming_spool(self, message_id: str) -> IncomingSpool:
        """A spool file to fill with a message as it arrives, then to submit_enqueue."""
        return IncomingSpool(self.spool_path(message_id))

    def submit_enqueue(self, sender: str, routes: list[Route], spool: IncomingSpool,
                       client: str = "", smtputf8: bool = False) -> Future[str]:
        """Queue the message in SPOOL for ROUTES in the next group commit. The future holds
        the queue id once the file and its rows are durable (then say 250), or the error;
        on an error the spool file is gone."""
        message_id = spool.final.name.removesuffix(".eml")

        def rows(db: sqlite3.Connection) -> str:
            self.insert_queue_rows(db, message_id, sender, routes, spool.size, client, smtputf8)
            return message_id

        return self.committer.submit(spool, rows)

    def spool(self, content: bytes | Sequence[Chunk], message_id: str | None = None) -> str:
        """Write CONTENT durably to the spool under MESSAGE_ID or a new queue id (not yet
        queued)."""
        message_id = message_id or new_queue_id()
        path = self.spool_path(message_id)
        try:
            write_durably(path, [content] if isinstance(content, bytes) else content)
        except BaseException:
            with contextlib.suppress(OSError):  # a full disk leaves no half-written debris
                path.with_name(path.name + ".tmp").unlink()
            raise
        return message_id

    def insert_queue_rows(self, db: sqlite3.Connection, message_id: str, sender: str,
                          routes: list[Route], size: int, client: str = "",
                          smtputf8: bool = False) -> None:
        now = self.clock()
        db.execute(
            "INSERT INTO messages (id, sender, received, size, spool, client, smtputf8)"
            " VALUES (?,?,?,?,?,?,?)",
            (message_id, sender, now, size, self.spool_path(message_id).name, client,
             int(smtputf8)),
        )
        db.executemany(
            "INSERT INTO recipients (message_id, rcpt, domain, confidential, mode, reason, state,"
            " attempts, next_attempt, last_reply, updated) VALUES (?,?,?,?,?,?,?,0,?,'',?)",
            [(message_id, r.rcpt, r.domain, int(r.confidential), r.mode, r.reason, QUEUED, now, now)
             for r in routes],
        )

    def due_recipients(self, limit: int = 500) -> list[QueuedRecipient]:
        rows = self.query(
            "SELECT r.*, m.sender, m.received, m.client, m.smtputf8 FROM recipients r"
            " JOIN messages m ON m.id = r.message_id"
            " WHERE r.state IN (?, ?) AND r.next_attempt <= ? ORDER BY r.next_attempt LIMIT ?",
            (QUEUED, DEFERRED, self.clock(), limit),
        )
        return [
            QueuedRecipient(r["message_id"], r["sender"], r["rcpt"], r["domain"],
                            bool(r["confidential"]), r["mode"], r["attempts"], r["received"],
                            r["client"] or "", r["updated"], r["reason"] or "",
                            bool(r["smtputf8"]))
            for r in rows
        ]

    def claim_due(self, limit: int = 500, per_domain: int | None = None
                  ) -> list[QueuedRecipient]:
        """Claim due work for this store's owner under a lease, in one atomic statement: up
        to LIMIT (message, domain) groups of recipients that are queued or deferred and due,
        or being delivered under a lease that expired (its owner died or stalled). With
        PER_DOMAIN, a domain gets no more groups than fit beside the live leases of every
        runner on that domain, so the cap holds across processes."""
        with self.transaction() as db:
            return self._claim_rows(db, limit, per_domain)

    def submit_claim(self, limit: int = 500, per_domain: int | None = None
                     ) -> Future[list[QueuedRecipient]]:
        """claim_due() in the next group commit (off the caller's thread, sharing the commit
        with the settlements waiting then)."""
        return self.committer.submit(None, lambda db: self._claim_rows(db, limit, per_domain))

    def _claim_rows(self, db: sqlite3.Connection, limit: int, per_domain: int | None
                    ) -> list[QueuedRecipient]:
        now = self.clock()
        params = {"me": self.owner, "now": now, "until": now + self.lease, "groups": limit,
                  "per_domain": per_domain if per_domain is not None else 2 ** 31,
                  "queued": State.QUEUED, "deferred": State.DEFERRED,
                  "delivering": State.DELIVERING}
        rows = db.execute(_CLAIM_SQL, params).fetchall()
        if not rows:
            return []
        ids = sorted({r["message_id"] for r in rows})
        messages = {m["id"]: m for m in db.execute(
            "SELECT id, sender, received, client, smtputf8 FROM messages"
            " WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))}
        claimed = [_queued_recipient(r, messages[r["message_id"]]) for r in rows
                   if r["message_id"] in messages]
        claimed.sort(key=lambda i: (i.message_id, i.domain, i.rcpt))
        return claimed

    def still_claimed(self, message_id: str, rcpts: list[str]) -> list[str]:
        """Those of RCPTS of MESSAGE_ID that this owner still holds for delivery."""
        claimed = {r["rcpt"] for r in self.query(
            "SELECT rcpt FROM recipients WHERE message_id=? AND state=? AND claimed_by=?",
            (message_id, DELIVERING, self.owner))}
        return [r for r in rcpts if r in claimed]

    def renew_leases(self) -> int:
        """Extend every claim this owner still holds (a live runner calls it while it
        delivers, so that nobody takes its work over)."""
        with self.transaction() as db:
            return self._renew_rows(db)

    def submit_renew_leases(self) -> Future[int]:
        """renew_leases() in the next group commit."""
        return self.committer.submit(None, self._renew_rows)

    def _renew_rows(self, db: sqlite3.Connection) -> int:
        return int(db.execute("UPDATE recipients SET lease_until=? WHERE state=? AND claimed_by=?",
                              (self.clock() + self.lease, DELIVERING, self.owner)).rowcount)

    def release_claims(self, message_id: str, rcpts: list[str]) -> None:
        """Give back claims not worked on (a stop came first): due again, attempts unchanged."""
        with self.transaction() as db:
            db.executemany("UPDATE recipients SET state=?, claimed_by=NULL, lease_until=NULL"
                           " WHERE message_id=? AND rcpt=? AND state=? AND claimed_by=?",
                           [(QUEUED, message_id, r, DELIVERING, self.owner) for r in rcpts])

    def expire_leases(self, owner: str) -> int:
        """End at once the leases of OWNER and of its workers (owner ids "OWNER/..."): it is
        known to be dead (its store lock was free, or its supervisor reaped it), so its
        work may be taken over now rather than when the leases run out. Nothing else
        changes: the rows stay `delivering` until a runner claims them."""
        if not owner:
            return 0
        with self.transaction() as db:
            return db.execute(
                "UPDATE recipients SET lease_until=0 WHERE state=? AND (claimed_by=?"
                " OR substr(claimed_by, 1, ?) = ?)",
                (DELIVERING, owner, len(owner) + 1, owner + "/")).rowcount

    def next_due_time(self) -> float | None:
        row = self.query("SELECT min(next_attempt) FROM recipients WHERE state IN (?, ?)",
                         (QUEUED, DEFERRED))
        return row[0][0] if row else None

    def set_recipient_state(self, message_id: str, rcpts: list[str], state: str, reply: str,
                            next_attempt: float | None = None,
                            db: sqlite3.Connection | None = None) -> None:
        """Record an attempt's outcome; with DB, inside the caller's transaction."""
        rows = [(state, reply[:1000], self.clock(), next_attempt, message_id, r) for r in rcpts]
        if db is not None:
            db.executemany(_SETTLE_SQL, rows)
            return
        with self.transaction() as own:
            own.executemany(_SETTLE_SQL, rows)
        self.release_spool_if_done(message_id)

    def settle(self, message_id: str, replies: dict[str, str], state: str,
               next_attempt: float | None = None, report: Report | None = None) -> list[str]:
        """Record STATE (with each recipient's reply) for those of REPLIES still being
        delivered, and queue REPORT in the same transaction: a crash leaves either both or
        neither, so a retried settlement never sends a second report. Returns the
        recipients settled now (none: someone settled or deleted them already)."""
        report_id = self.spool(report.content) if report is not None else None
        settlement = Settlement(message_id, replies, state, next_attempt, report, report_id)
        try:
            with self.transaction() as db:
                settled = self._settle_rows(db, settlement)
        except BaseException:
            self.discard_reports([settlement])
            raise
        if not settled:
            self.discard_reports([settlement])
        self.release_spool_if_done(message_id)
        return settled

    def spool_reports(self, settlements: list[Settlement]) -> list[Settlement]:
        """SETTLEMENTS with their reports written durably to the spool (blocking: call from
        a worker thread), ready for submit_settlements."""
        return [s if s.report is None or s.report_id is not None
                else dataclasses.replace(s, report_id=self.spool(s.report.content))
                for s in settlements]

    def discard_reports(self, settlements: list[Settlement]) -> None:
        """Remove the report spool files of settlements that were not recorded."""
        for settlement in settlements:
            if settlement.report_id is not None:
                self._discard_spool(settlement.report_id)

    def submit_settlements(self, settlements: list[Settlement],
                           attempts: Sequence[AttemptRow] = ()) -> Future[list[list[str]]]:
        """Record SETTLEMENTS and the ATTEMPTS history in the next group commit, in one
        savepoint: all or none. The future holds, per settlement, the recipients settled
        (only those this owner still held); by then the spool files no recipient needs any
        more are gone, and so are the reports of settlements that settled nobody. On an
        error nothing was recorded: the caller discards the reports (discard_reports)."""
        finished: list[str] = []

        def rows(db: sqlite3.Connection) -> list[list[str]]:
            settled = [self._settle_rows(db, s) for s in settlements]
            if attempts:
                db.executemany(_ATTEMPT_SQL, attempts)
            finished[:] = self._finished_messages(db, {s.message_id for s in settlements})
            return settled

        def after(settled: list[list[str]]) -> None:
            self.discard_reports([s for s, done in zip(settlements, settled, strict=True)
                                  if not done])
            for message_id in finished:
                self._unlink_spool(message_id)

        return self.committer.submit(None, rows, after)

    def submit_attempts(self, attempts: Sequence[AttemptRow]) -> Future[None]:
        """Add ATTEMPTS to the delivery history in the next group commit."""
        def rows(db: sqlite3.Connection) -> None:
            db.executemany(_ATTEMPT_SQL, attempts)

        return self.committer.submit(None, rows)

    def settle_in(self, db: sqlite3.Connection, settlement: Settlement) -> list[str]:
        """settle() inside the caller's transaction DB (the pickup stage's): the recipients
        settled, only those this owner still holds under its lease."""
        return self._settle_rows(db, settlement)

    def _settle_rows(self, db: sqlite3.Connection, settlement: Settlement) -> list[str]:
        # Only while this owner still holds the lease: a runner whose work was taken over
        # must not overwrite the new owner's result.
        s, now = settlement, self.clock()
        settled = [r for r in s.replies if db.execute(
            _SETTLE_SQL + " AND state=? AND claimed_by=?",
            (s.state, s.replies[r][:1000], now, s.next_attempt, s.message_id, r, DELIVERING,
             self.owner)).rowcount]
        if settled and s.report is not None and s.report_id is not None:
            self.insert_queue_rows(db, s.report_id, s.report.sender, [s.report.route],
                                   len(s.report.content))
        return settled

    @staticmethod
    def _finished_messages(db: sqlite3.Connection, message_ids: Iterable[str]) -> list[str]:
        """Those of MESSAGE_IDS no recipient still needs the spool file of."""
        return [m for m in message_ids if not db.execute(
            "SELECT 1 FROM recipients WHERE message_id=? AND state IN (?, ?, ?) LIMIT 1",
            (m, *PENDING)).fetchone()]

    def _discard_spool(self, message_id: str) -> None:
        """Remove a spool file that never got its queue rows (best effort: debris is also
        cleaned at start-up)."""
        with contextlib.suppress(OSError):
            remove_durably(self.spool_path(message_id))

    def release_spool_if_done(self, message_id: str) -> None:
        """Remove the plaintext spool copy once no recipient still needs it."""
        pending = self.query(
            "SELECT count(*) FROM recipients WHERE message_id=? AND state IN (?, ?, ?)",
            (message_id, *PENDING),
        )[0][0]
        if pending == 0:
            self._unlink_spool(message_id)

    def _unlink_spool(self, message_id: str) -> None:
        # No fsync: the rows say the message is done, and should the removal be lost in a
        # crash, the start-up sweep (clean_spool_debris) removes the file.
        with contextlib.suppress(FileNotFoundError):
            self.spool_path(message_id).unlink()

    def clean_spool_debris(self, min_age: float = 60.0, tmp_min_age: float = 0.0) -> int:
        """Remove what a crash or a full disk left in the spool: `.tmp` files of writes that
        never finished (older than TMP_MIN_AGE), and spool files no pending recipient needs
        (no messages row, or every recipient settled), older than MIN_AGE so that a message
        being accepted right now (file written, rows not yet committed) is left alone."""
        now = time.time()  # file times are wall-clock, whatever clock the store runs on
        pending = {r[0] for r in self.query(
            "SELECT DISTINCT message_id FROM recipients WHERE state IN (?, ?, ?)", PENDING)}
        removed = 0
        for path in self.spool_dir.iterdir():
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
            fsync_dir(self.spool_dir)
        return removed

    def read_spool(self, message_id: str) -> bytes:
        return self.spool_path(message_id).read_bytes()

    def read_spool_headers(self, message_id: str) -> bytes:
        """Only the header section of a spooled message: never the (maybe huge) body."""
        lines = []
        with self.spool_path(message_id).open("rb") as spool:
            for line in spool:
                if line in (b"\r\n", b"\n"):
                    break
                lines.append(line)
        return b"".join(lines)

    def flush(self) -> int:
        with self.transaction() as db:
            return db.execute("UPDATE recipients SET next_attempt=? WHERE state IN (?, ?)",
                              (self.clock(), QUEUED, DEFERRED)).rowcount

    def delete_message(self, message_id: str) -> bool:
        with self.transaction() as db:
            db.execute("DELETE FROM recipients WHERE message_id=?", (message_id,))
            found = db.execute("DELETE FROM messages WHERE id=?", (message_id,)).rowcount
        remove_durably(self.spool_path(message_id))
        return bool(found)

    # -- pickup ------------------------------------------------------------------------

    def store_pickup(self, message_id: str, sender: str, recipient: str, expires: float,
                     then: Callable[[sqlite3.Connection, str], None] | None = None,
                     pickup_id: str | None = None) -> str:
        """Encrypt the spooled message for RECIPIENT; THEN runs in the same transaction
        (to queue the notification and settle the recipient atomically)."""
        pickup_id = pickup_id or new_pickup_id()
        blob = self.blob_dir / f"{pickup_id}.sgb"
        try:
            with self.spool_path(message_id).open("rb") as source:
                sealed = crypto.encrypt_file(self.keys, source, blob, pickup_id, recipient)
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO pickups (id, message_id, sender, recipient, created, expires,"
                    " key_id, wrapped_key, blob, read_at, size) VALUES (?,?,?,?,?,?,?,?,?,NULL,?)",
                    (pickup_id, message_id, sender, recipient.lower(), self.clock(), expires,
                     sealed.key_id, sealed.wrapped, blob.name, blob.stat().st_size),
                )
                if then is not None:
                    then(db, pickup_id)
        except BaseException:
            with contextlib.suppress(OSError):  # no row points at it: a retry writes a new one
                blob.unlink()
            raise
        return pickup_id

    def get_pickup(self, pickup_id: str) -> Pickup | None:
        rows = self.query("SELECT * FROM pickups WHERE id=? AND expires > ?",
                          (pickup_id, self.clock()))
        return _pickup(rows[0]) if rows else None

    def list_pickups(self, recipient: str | None = None) -> list[Pickup]:
        if recipient is None:
            rows = self.query("SELECT * FROM pickups ORDER BY created DESC")
        else:
            rows = self.query("SELECT * FROM pickups WHERE recipient=? AND expires > ?"
                              " ORDER BY created DESC", (recipient.lower(), self.clock()))
        return [_pickup(r) for r in rows]

    def open_pickup(self, pickup_id: str) -> bytes:
        """The decrypted original message; raises KeyError when gone, DecryptionError when
        tampered."""
        return crypto.decrypt_file(self.keys, *self.sealed_blob(pickup_id))

    def mark_pickup_read(self, pickup_id: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE pickups SET read_at=coalesce(read_at, ?) WHERE id=?",
                       (self.clock(), pickup_id))

    def destroy_conversation(self, pickup_id: str) -> int:
        """Destroy a stored message and the portal replies kept in its thread."""
        replies = [r["id"] for r in self.query("SELECT id FROM pickups WHERE thread_id=?",
                                               (pickup_id,))]
        return sum(self.destroy_pickup(i) for i in [pickup_id, *replies])

    def destroy_pickup(self, pickup_id: str) -> bool:
        """Destroy blob, wrapped data key and row; secure_delete overwrites the freed pages."""
        rows = self.query("SELECT blob FROM pickups WHERE id=?", (pickup_id,))
        if not rows:
            return False
        remove_durably(self.blob_dir / rows[0]["blob"])
        with self.transaction() as db:
            db.execute("DELETE FROM pickups WHERE id=?", (pickup_id,))
        return True

    def expired_pickups(self) -> list[str]:
        return [r["id"] for r in self.query("SELECT id FROM pickups WHERE expires <= ?",
                                            (self.clock(),))]

    def spool_stream(self, chunks: Iterable[Chunk]) -> tuple[str, int]:
        """Write CHUNKS (any iterable, consumed once) durably to the spool under a new queue id,
        never holding the whole message; returns the id and the size written."""
        message_id = new_queue_id()
        path = self.spool_path(message_id)
        try:
            size = write_durably(path, chunks)
        except BaseException:
            remove_durably(path.with_name(path.name + ".tmp"))  # a full disk leaves no debris
            raise
        return message_id, size


# One statement claims (see claim_due): due rows, and rows whose lease ran out, capped per
# domain by the live leases of every runner; groups are (message, domain) pairs, oldest first.
_CLAIM_SQL = """
WITH busy AS (
    SELECT domain, count(DISTINCT message_id) AS groups FROM recipients
     WHERE state = :delivering AND lease_until >= :now GROUP BY domain),
due AS (
    SELECT rowid AS id, message_id, domain FROM recipients
     WHERE state IN (:queued, :deferred) AND next_attempt <= :now
        OR state = :delivering AND coalesce(lease_until, 0) < :now
           AND coalesce(claimed_by, '') != :me),
ranked AS (
    SELECT id, message_id, domain,
           dense_rank() OVER (PARTITION BY domain ORDER BY message_id) AS nth_in_domain
      FROM due),
allowed AS (
    SELECT r.id, dense_rank() OVER (ORDER BY r.message_id, r.domain) AS nth_group
      FROM ranked r LEFT JOIN busy b ON b.domain = r.domain
     WHERE r.nth_in_domain + coalesce(b.groups, 0) <= :per_domain)
UPDATE recipients SET state = :delivering, claimed_by = :me, lease_until = :until
 WHERE rowid IN (SELECT id FROM allowed WHERE nth_group <= :groups)
RETURNING message_id, rcpt, domain, confidential, mode, attempts, updated, reason
"""

_ATTEMPT_SQL = ("INSERT INTO attempts (message_id, rcpt, at, host, address, reply, tls_version,"
                " cipher, cert_subject, cert_issuer, verified, reason)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")

_SETTLE_SQL = ("UPDATE recipients SET state=?, last_reply=?, updated=?, attempts=attempts+1,"
               " next_attempt=coalesce(?, next_attempt), claimed_by=NULL, lease_until=NULL"
               " WHERE message_id=? AND rcpt=?")


def _queued_recipient(row: sqlite3.Row, message: sqlite3.Row) -> QueuedRecipient:
    return QueuedRecipient(row["message_id"], message["sender"], row["rcpt"], row["domain"],
                           bool(row["confidential"]), Mode(row["mode"]), row["attempts"],
                           message["received"], message["client"] or "", row["updated"],
                           row["reason"] or "", bool(message["smtputf8"]))


def _pickup(row: sqlite3.Row) -> Pickup:
    return Pickup(row["id"], row["message_id"], row["sender"], row["recipient"], row["created"],
                  row["expires"], row["read_at"], row["size"], row["kind"], row["thread_id"],
                  row["replied_at"])


def open_store(directory: Path, clock: Clock = time.time, owner: str | None = None) -> Store:
    os.umask(0o077)
    return Store(directory, clock, owner)
