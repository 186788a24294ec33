"""The audit trail (table audit) and read-only views of the queue for admins (tables
messages, recipients, attempts): what `sealgate pickup audit` and `sealgate queue` show."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.storage.postgres.connection import PostgresPart, Row
from gateway.storage.protocols import (
    Attempt,
    AuditEvent,
    MessageStatus,
    RecipientStatus,
    WaitingRecipient,
)

WAITING = ("queued", "deferred", "delivering")
REPLY_LIMIT = 1000  # characters of an MX reply kept, as on SQLite


def _attempt(row: Row) -> Attempt:
    return Attempt(row["rcpt"], row["at"], row["host"], row["address"], row["reply"],
                   row["tls_version"], row["cipher"], row["cert_subject"], row["cert_issuer"],
                   row["verified"], row["reason"])


class PostgresAudit(PostgresPart):
    def audit(self, pickup_id: str, event: str, client: str = "", detail: str = "") -> None:
        with self.db.transaction() as cursor:
            cursor.execute("INSERT INTO audit (pickup_id, at, event, client, detail)"
                           " VALUES (%s, %s, %s, %s, %s)",
                           (pickup_id, self.clock(), event, client, detail))

    def audit_events(self, pickup_id: str) -> list[AuditEvent]:
        return [AuditEvent(r["pickup_id"], r["at"], r["event"], r["client"], r["detail"])
                for r in self.db.query("SELECT * FROM audit WHERE pickup_id = %s"
                                       " ORDER BY at, id", (pickup_id,))]


class PostgresQueueInspection(PostgresPart):
    def waiting_recipients(self) -> list[WaitingRecipient]:
        return [WaitingRecipient(r["message_id"], r["rcpt"], r["state"], r["attempts"],
                                 r["next_attempt"], r["last_reply"], r["mode"], r["sender"],
                                 r["received"])
                for r in self.db.query(
                    "SELECT r.message_id, r.rcpt, r.state, r.attempts, r.next_attempt,"
                    " r.last_reply, r.mode, m.sender, m.received FROM recipients r"
                    " JOIN messages m ON m.id = r.message_id WHERE r.state = ANY(%s)"
                    " ORDER BY m.received, r.message_id, r.rcpt", (list(WAITING),))]

    def queued_message(self, message_id: str) -> MessageStatus | None:
        found = self.db.query("SELECT * FROM messages WHERE id = %s", (message_id,))
        if not found:
            return None
        history: dict[str, list[Attempt]] = {}
        for row in self.db.query("SELECT * FROM attempts WHERE message_id = %s"
                                 " ORDER BY at, id", (message_id,)):
            history.setdefault(row["rcpt"], []).append(_attempt(row))
        recipients = tuple(
            RecipientStatus(r["rcpt"], r["domain"], r["confidential"], r["mode"], r["reason"],
                            r["state"], r["attempts"], r["next_attempt"], r["last_reply"],
                            r["updated"], tuple(history.get(r["rcpt"], ())), r["claimed_by"] or "")
            for r in self.db.query("SELECT * FROM recipients WHERE message_id = %s"
                                   " ORDER BY rcpt", (message_id,)))
        m = found[0]
        return MessageStatus(m["id"], m["sender"], m["received"], m["size"], m["client"],
                             m["smtputf8"], recipients, m["requiretls"], m["tls_optional"])

    def messages_to(self, rcpt: str) -> list[MessageStatus]:
        """Every message with RCPT (matched exactly) among its recipients, whatever their
        states, oldest first, as queued_message shows them. (The queue branch adds this to
        QueueInspection.)"""
        ids = [r["id"] for r in self.db.query(
            "SELECT m.id FROM messages m WHERE EXISTS (SELECT 1 FROM recipients r"
            " WHERE r.message_id = m.id AND r.rcpt = %s) ORDER BY m.received, m.id", (rcpt,))]
        return [status for status in map(self.queued_message, ids) if status is not None]

    def record_attempts(self, message_id: str, attempts: Sequence[Attempt]) -> None:
        """Add ATTEMPTS of MESSAGE_ID to its delivery history, in one commit."""
        with self.db.transaction() as cursor:
            cursor.executemany(
                "INSERT INTO attempts (message_id, rcpt, at, host, address, reply, tls_version,"
                " cipher, cert_subject, cert_issuer, verified, reason)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(message_id, a.rcpt, a.at, a.host, a.address, a.reply[:REPLY_LIMIT],
                  a.tls_version, a.cipher, a.cert_subject, a.cert_issuer, a.verified, a.reason)
                 for a in attempts])

    def message_count(self) -> int:
        [row] = self.db.query("SELECT count(*) AS n FROM messages")
        return int(row["n"])
