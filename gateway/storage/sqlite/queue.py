"""The queue in SQLite (tables messages, recipients, attempts) with its content in spool
files (sqlite/spool.py): QueueStore of gateway/storage/protocols.py.

The queue on disk is the source of truth: a message is acknowledged only after its spool
file is fsync'ed and its rows are committed with synchronous=FULL. The hot path (accepting,
claiming, renewing, settling) goes through the group-commit writer, so that everything
waiting at a moment shares one commit.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.queue.model import Mode, State
from gateway.storage.group_commit import Chunk, GroupCommitter, IncomingSpool
from gateway.storage.ids import new_queue_id
from gateway.storage.protocols import (
    Attempt,
    AttemptRecord,
    EnvelopeDSN,
    IncomingMessage,
    QueuedRecipient,
    Report,
    Route,
    Settlement,
)
from gateway.storage.sqlite.base import SQLitePart
from gateway.storage.sqlite.spool import SpoolFiles

QUEUED, DEFERRED, DELIVERING = State.QUEUED, State.DEFERRED, State.DELIVERING
PENDING = (QUEUED, DEFERRED, DELIVERING)  # states in which a recipient still needs the spool
DEFAULT_LEASE = 600.0  # seconds a claim holds unless its owner renews it
T = TypeVar("T")


@dataclass(frozen=True)
class _Spooled:
    """A settlement whose report (if any) is written to the spool as REPORT_ID."""

    settlement: Settlement
    report_id: str | None = None


class SQLiteSpoolRelease(SQLitePart):
    spool_files: SpoolFiles

    def release_spool_if_done(self, message_id: str) -> None:
        """Remove the plaintext spool copy once no recipient still needs it."""
        if not self.query(_PENDING_SQL, (message_id, *PENDING)):
            self.spool_files.remove(message_id)


class SQLiteQueue(SQLiteSpoolRelease):
    owner: str
    lease: float
    spool_files: SpoolFiles
    committer: GroupCommitter
    # Writes report spool files before their settlements go to the writer: an fsync per
    # report (bounces, delay warnings: rare) must not hold up the writer's batch.
    _report_writer: ThreadPoolExecutor

    # -- accepting ---------------------------------------------------------------------

    def incoming_spool(self, message_id: str) -> IncomingSpool:
        return self.spool_files.incoming(message_id)

    def submit_enqueue(self, sender: str, routes: list[Route], spool: IncomingMessage,
                       client: str = "", smtputf8: bool = False,
                       dsn: EnvelopeDSN | None = None, requiretls: bool = False,
                       tls_optional: bool = False) -> Future[str]:
        if not isinstance(spool, IncomingSpool):
            raise TypeError("submit_enqueue takes a spool from this storage's incoming_spool")
        message_id = spool.final.name.removesuffix(".eml")

        def rows(db: sqlite3.Connection) -> str:
            insert_message(db, message_id, sender, routes, spool.size, self.clock(), client,
                           smtputf8, dsn, requiretls, tls_optional)
            return message_id

        return self.committer.submit(spool, rows)

    def enqueue(self, sender: str, routes: list[Route], content: bytes | Iterable[Chunk],
                client: str = "", message_id: str | None = None, smtputf8: bool = False,
                dsn: EnvelopeDSN | None = None, requiretls: bool = False,
                tls_optional: bool = False) -> str:
        spool = self.incoming_spool(message_id or new_queue_id())
        for chunk in [content] if isinstance(content, bytes) else content:
            spool.add(chunk)
            if spool.needs_spill:  # a large message is never whole in memory
                spool.spill()
        return self.submit_enqueue(sender, routes, spool, client, smtputf8, dsn, requiretls,
                                   tls_optional).result()

    def spool_stream(self, chunks: Iterable[Chunk]) -> tuple[str, int]:
        message_id = new_queue_id()
        return message_id, self.spool_files.write(message_id, chunks)

    def read_spool(self, message_id: str) -> bytes:
        return self.spool_files.read(message_id)

    def read_spool_chunks(self, message_id: str) -> Iterator[bytes]:
        return self.spool_files.chunks(message_id)

    def read_spool_headers(self, message_id: str) -> bytes:
        return self.spool_files.headers(message_id)

    # -- claims ------------------------------------------------------------------------

    def claim_due(self, limit: int = 500, per_domain: int | None = None
                  ) -> list[QueuedRecipient]:
        with self.transaction() as db:
            return self._claim_rows(db, limit, per_domain)

    def submit_claim(self, limit: int = 500, per_domain: int | None = None
                     ) -> Future[list[QueuedRecipient]]:
        return self.committer.submit(None, lambda db: self._claim_rows(db, limit, per_domain))

    def _claim_rows(self, db: sqlite3.Connection, limit: int, per_domain: int | None
                    ) -> list[QueuedRecipient]:
        now = self.clock()
        params = {"me": self.owner, "now": now, "until": now + self.lease, "groups": limit,
                  "per_domain": per_domain if per_domain is not None else 2 ** 31,
                  "queued": QUEUED, "deferred": DEFERRED, "delivering": DELIVERING}
        rows = db.execute(_CLAIM_SQL, params).fetchall()
        if not rows:
            return []
        ids = sorted({r["message_id"] for r in rows})
        messages = {m["id"]: m for m in db.execute(
            "SELECT id, sender, received, client, smtputf8, dsn_ret, dsn_envid, requiretls,"
            " tls_optional FROM messages"
            " WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))}
        claimed = [_queued_recipient(r, messages[r["message_id"]]) for r in rows
                   if r["message_id"] in messages]
        claimed.sort(key=lambda i: (i.message_id, i.domain, i.rcpt))
        return claimed

    def still_claimed(self, message_id: str, rcpts: list[str]) -> list[str]:
        claimed = {r["rcpt"] for r in self.query(
            "SELECT rcpt FROM recipients WHERE message_id=? AND state=? AND claimed_by=?",
            (message_id, DELIVERING, self.owner))}
        return [r for r in rcpts if r in claimed]

    def renew_leases(self) -> int:
        with self.transaction() as db:
            return self._renew_rows(db)

    def submit_renew_leases(self) -> Future[int]:
        return self.committer.submit(None, self._renew_rows)

    def _renew_rows(self, db: sqlite3.Connection) -> int:
        return int(db.execute("UPDATE recipients SET lease_until=? WHERE state=? AND claimed_by=?",
                              (self.clock() + self.lease, DELIVERING, self.owner)).rowcount)

    def release_claims(self, message_id: str, rcpts: list[str]) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE recipients SET state=?, claimed_by=NULL, lease_until=NULL"
                           " WHERE message_id=? AND rcpt=? AND state=? AND claimed_by=?",
                           [(QUEUED, message_id, r, DELIVERING, self.owner) for r in rcpts])

    def expire_leases(self, owner: str) -> int:
        # Nothing else changes: the rows stay `delivering` until a runner claims them.
        if not owner:
            return 0
        with self.transaction() as db:
            return db.execute(
                "UPDATE recipients SET lease_until=0 WHERE state=? AND (claimed_by=?"
                " OR substr(claimed_by, 1, ?) = ?)",
                (DELIVERING, owner, len(owner) + 1, owner + "/")).rowcount

    # -- outcomes ----------------------------------------------------------------------

    def settle(self, message_id: str, replies: dict[str, str], state: str,
               next_attempt: float | None = None, report: Report | None = None) -> list[str]:
        settlement = Settlement(message_id, replies, state, next_attempt, report)
        [settled] = self.submit_settlements([settlement]).result()
        return settled

    def submit_settlements(self, settlements: Sequence[Settlement],
                           attempts: Sequence[AttemptRecord] = ()
                           ) -> Future[list[list[str]]]:
        if not any(s.report is not None for s in settlements):
            return self._submit_spooled([_Spooled(s) for s in settlements], attempts)
        outcome: Future[list[list[str]]] = Future()

        def spool_then_submit() -> None:
            try:
                spooled = [_Spooled(s, self._spool_report(s.report)) for s in settlements]
            except BaseException as exc:
                outcome.set_exception(exc)
                return
            committed = self._submit_spooled(spooled, attempts)
            committed.add_done_callback(lambda done: _pass_on(done, outcome))

        self._report_writer.submit(spool_then_submit)
        return outcome

    def _spool_report(self, report: Report | None) -> str | None:
        if report is None:
            return None
        report_id = new_queue_id()
        self.spool_files.write(report_id, [report.content])
        return report_id

    def _submit_spooled(self, spooled: list[_Spooled], attempts: Sequence[AttemptRecord]
                        ) -> Future[list[list[str]]]:
        finished: list[str] = []

        def rows(db: sqlite3.Connection) -> list[list[str]]:
            settled = [settle_rows(db, s.settlement, self.owner, self.clock(), s.report_id)
                       for s in spooled]
            insert_attempts(db, attempts)
            finished[:] = _finished_messages(db, {s.settlement.message_id for s in spooled})
            return settled

        def after(settled: list[list[str]]) -> None:
            for s, done in zip(spooled, settled, strict=True):
                if s.report_id is not None and not done:  # its settlement lost the lease
                    self.spool_files.discard(s.report_id)
            for message_id in finished:
                self.spool_files.remove(message_id)

        committed = self.committer.submit(None, rows, after)
        reports = [s.report_id for s in spooled if s.report_id is not None]
        if reports:  # nothing was recorded: the reports go
            committed.add_done_callback(lambda done: self._discard_if_failed(done, reports))
        return committed

    def _discard_if_failed(self, done: Future[Any], report_ids: list[str]) -> None:
        if done.exception() is not None:
            for report_id in report_ids:
                self.spool_files.discard(report_id)

    def record_attempts(self, message_id: str, attempts: Sequence[Attempt]) -> None:
        with self.transaction() as db:
            insert_attempts(db, [AttemptRecord(message_id, a) for a in attempts])

    def submit_attempts(self, attempts: Sequence[AttemptRecord]) -> Future[None]:
        return self.committer.submit(None, lambda db: insert_attempts(db, attempts))


    # -- admin -------------------------------------------------------------------------

    def next_due_time(self) -> float | None:
        row = self.query("SELECT min(next_attempt) FROM recipients WHERE state IN (?, ?)",
                         (QUEUED, DEFERRED))
        return row[0][0] if row else None

    def flush(self) -> int:
        with self.transaction() as db:
            return db.execute("UPDATE recipients SET next_attempt=? WHERE state IN (?, ?)",
                              (self.clock(), QUEUED, DEFERRED)).rowcount

    def delete_message(self, message_id: str) -> bool:
        with self.transaction() as db:
            db.execute("DELETE FROM recipients WHERE message_id=?", (message_id,))
            found = db.execute("DELETE FROM messages WHERE id=?", (message_id,)).rowcount
        self.spool_files.remove_durably(message_id)
        return bool(found)

    def prune_history(self, settled_before: float) -> int:
        with self.transaction() as db:
            finished = [row[0] for row in db.execute(
                "SELECT id FROM messages m WHERE received < ? AND NOT EXISTS ("
                " SELECT 1 FROM recipients r WHERE r.message_id = m.id"
                " AND (r.state IN (?, ?, ?) OR r.updated >= ?))",
                (settled_before, *PENDING, settled_before))]
            ids = [(message_id,) for message_id in finished]
            db.executemany("DELETE FROM attempts WHERE message_id = ?", ids)
            db.executemany("DELETE FROM recipients WHERE message_id = ?", ids)
            db.executemany("DELETE FROM messages WHERE id = ?", ids)
        return len(finished)

    def clean_spool_debris(self, min_age: float = 60.0, tmp_min_age: float = 0.0) -> int:
        pending = {r[0] for r in self.query(
            "SELECT DISTINCT message_id FROM recipients WHERE state IN (?, ?, ?)", PENDING)}
        return self.spool_files.clean_debris(pending, min_age, tmp_min_age)


# -- statements shared with the pickup part (one transaction for pickup and queue rows) --


def insert_message(db: sqlite3.Connection, message_id: str, sender: str, routes: list[Route],
                   size: int, now: float, client: str = "", smtputf8: bool = False,
                   dsn: EnvelopeDSN | None = None, requiretls: bool = False,
                   tls_optional: bool = False) -> None:
    """The rows of a message whose spool file is written, inside the caller's transaction."""
    dsn = dsn or EnvelopeDSN()
    db.execute(
        "INSERT INTO messages (id, sender, received, size, spool, client, smtputf8, dsn_ret,"
        " dsn_envid, requiretls, tls_optional) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (message_id, sender, now, size, f"{message_id}.eml", client, int(smtputf8), dsn.ret,
         dsn.envid, int(requiretls), int(tls_optional)),
    )
    db.executemany(
        "INSERT INTO recipients (message_id, rcpt, domain, confidential, mode, reason, state,"
        " attempts, next_attempt, last_reply, updated, dsn_notify, dsn_orcpt, receipt)"
        " VALUES (?,?,?,?,?,?,?,0,?,'',?,?,?,?)",
        [(message_id, r.rcpt, r.domain, int(r.confidential), r.mode, r.reason, QUEUED, now, now,
          r.notify, r.orcpt, int(r.receipt)) for r in routes],
    )


def settle_rows(db: sqlite3.Connection, settlement: Settlement, owner: str, now: float,
                report_id: str | None = None) -> list[str]:
    """SETTLEMENT inside the caller's transaction, with its report spooled as REPORT_ID:
    the recipients settled, only those OWNER still holds. A runner whose work was taken
    over must not overwrite the new owner's result."""
    s = settlement
    settled = [r for r in s.replies if db.execute(
        _SETTLE_SQL, (s.state, s.replies[r][:1000], now, s.next_attempt, s.message_id, r,
                      DELIVERING, owner)).rowcount]
    if settled and s.report is not None and report_id is not None:
        insert_message(db, report_id, s.report.sender, [s.report.route], len(s.report.content),
                       now)
    return settled


def insert_attempts(db: sqlite3.Connection, attempts: Sequence[AttemptRecord]) -> None:
    db.executemany(
        "INSERT INTO attempts (message_id, rcpt, at, host, address, reply, tls_version,"
        " cipher, cert_subject, cert_issuer, verified, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [(r.message_id, a.rcpt, a.at, a.host, a.address, a.reply[:1000], a.tls_version,
          a.cipher, a.cert_subject, a.cert_issuer, int(a.verified), a.reason)
         for r in attempts for a in [r.attempt]])


def _finished_messages(db: sqlite3.Connection, message_ids: Iterable[str]) -> list[str]:
    """Those of MESSAGE_IDS no recipient still needs the spool file of."""
    return [m for m in message_ids if not db.execute(_PENDING_SQL, (m, *PENDING)).fetchone()]


def _pass_on(source: Future[T], target: Future[T]) -> None:
    if (exc := source.exception()) is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


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
RETURNING message_id, rcpt, domain, confidential, mode, attempts, updated, reason,
          dsn_notify, dsn_orcpt, receipt
"""

_PENDING_SQL = "SELECT 1 FROM recipients WHERE message_id=? AND state IN (?, ?, ?) LIMIT 1"

_SETTLE_SQL = ("UPDATE recipients SET state=?, last_reply=?, updated=?, attempts=attempts+1,"
               " next_attempt=coalesce(?, next_attempt), claimed_by=NULL, lease_until=NULL"
               " WHERE message_id=? AND rcpt=? AND state=? AND claimed_by=?")


def _queued_recipient(row: sqlite3.Row, message: sqlite3.Row) -> QueuedRecipient:
    return QueuedRecipient(row["message_id"], message["sender"], row["rcpt"], row["domain"],
                           bool(row["confidential"]), Mode(row["mode"]), row["attempts"],
                           message["received"], message["client"] or "", row["updated"],
                           row["reason"] or "", bool(message["smtputf8"]),
                           row["dsn_notify"], row["dsn_orcpt"], bool(row["receipt"]),
                           EnvelopeDSN(message["dsn_ret"], message["dsn_envid"]),
                           bool(message["requiretls"]), bool(message["tls_optional"]))


def new_report_writer() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(2, thread_name_prefix="sealgate-reports")
