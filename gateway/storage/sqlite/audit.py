"""The audit trail (table audit) and read-only views of the queue for admins (tables
messages, recipients, attempts): what `sealgate pickup audit` and `sealgate queue` show."""

from __future__ import annotations

import sqlite3

from gateway.storage.protocols import (
    Attempt,
    AuditEvent,
    MessageStatus,
    RecipientStatus,
    WaitingRecipient,
)
from gateway.storage.sqlite.base import SQLitePart

WAITING = ("queued", "deferred", "delivering")


def _attempt(row: sqlite3.Row) -> Attempt:
    return Attempt(row["rcpt"], row["at"], row["host"] or "", row["address"] or "",
                   row["reply"] or "", row["tls_version"], row["cipher"],
                   row["cert_subject"] or "", row["cert_issuer"] or "", bool(row["verified"]),
                   row["reason"] or "")


class SQLiteAudit(SQLitePart):
    def audit(self, pickup_id: str, event: str, client: str = "", detail: str = "") -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO audit (pickup_id, at, event, client, detail)"
                       " VALUES (?,?,?,?,?)", (pickup_id, self.clock(), event, client, detail))

    def audit_events(self, pickup_id: str) -> list[AuditEvent]:
        return [AuditEvent(r["pickup_id"], r["at"], r["event"], r["client"] or "",
                           r["detail"] or "")
                for r in self.query("SELECT * FROM audit WHERE pickup_id=? ORDER BY at, id",
                                    (pickup_id,))]


class SQLiteQueueInspection(SQLitePart):
    def waiting_recipients(self) -> list[WaitingRecipient]:
        return [WaitingRecipient(r["message_id"], r["rcpt"], r["state"], r["attempts"],
                                 r["next_attempt"], r["last_reply"] or "", r["mode"],
                                 r["sender"], r["received"])
                for r in self.query(
                    "SELECT r.message_id, r.rcpt, r.state, r.attempts, r.next_attempt,"
                    " r.last_reply, r.mode, m.sender, m.received FROM recipients r"
                    " JOIN messages m ON m.id=r.message_id WHERE r.state IN (?,?,?)"
                    " ORDER BY m.received, r.message_id, r.rcpt", WAITING)]

    def queued_message(self, message_id: str) -> MessageStatus | None:
        found = self.query("SELECT * FROM messages WHERE id=?", (message_id,))
        if not found:
            return None
        history: dict[str, list[Attempt]] = {}
        for row in self.query("SELECT * FROM attempts WHERE message_id=? ORDER BY at, id",
                              (message_id,)):
            history.setdefault(row["rcpt"], []).append(_attempt(row))
        recipients = tuple(
            RecipientStatus(r["rcpt"], r["domain"], bool(r["confidential"]), r["mode"],
                            r["reason"] or "", r["state"], r["attempts"], r["next_attempt"],
                            r["last_reply"] or "", r["updated"],
                            tuple(history.get(r["rcpt"], ())), r["claimed_by"] or "")
            for r in self.query("SELECT * FROM recipients WHERE message_id=? ORDER BY rcpt",
                                (message_id,)))
        m = found[0]
        return MessageStatus(m["id"], m["sender"], m["received"], m["size"], m["client"] or "",
                             bool(m["smtputf8"]), recipients, bool(m["requiretls"]),
                             bool(m["tls_optional"]))

    def messages_to(self, rcpt: str) -> list[MessageStatus]:
        ids = [r["id"] for r in self.query(
            "SELECT m.id FROM messages m WHERE EXISTS (SELECT 1 FROM recipients r"
            " WHERE r.message_id = m.id AND r.rcpt = ?) ORDER BY m.received, m.id", (rcpt,))]
        return [status for status in map(self.queued_message, ids) if status is not None]

    def message_count(self) -> int:
        return int(self.query("SELECT count(*) FROM messages")[0][0])
