"""Sender links in PostgreSQL (table sender_links), and the pickups of one message they show."""

from __future__ import annotations

from gateway.storage.postgres.connection import PostgresPart, Row
from gateway.storage.postgres.pickups import MESSAGE, pickup_from_row
from gateway.storage.protocols import Pickup, SenderLink


class PostgresSenderLinks(PostgresPart):
    def put_sender_link(self, link: SenderLink) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("INSERT INTO sender_links (link_id, secret_hash, message_id, sender,"
                           " created, expires, revoked_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                           (link.link_id, link.secret_hash, link.message_id, link.sender,
                            link.created, link.expires, link.revoked_at))

    def get_sender_link(self, link_id: str) -> SenderLink | None:
        rows = self.db.query("SELECT * FROM sender_links WHERE link_id = %s AND expires > %s",
                             (link_id, self.clock()))
        return _link(rows[0]) if rows else None

    def mark_sender_link_revoked(self, link_id: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE sender_links SET revoked_at = coalesce(revoked_at, %s)"
                           " WHERE link_id = %s", (self.clock(), link_id))

    def message_pickups(self, message_id: str) -> list[Pickup]:
        return [pickup_from_row(r) for r in self.db.query(
            "SELECT * FROM pickups WHERE message_id = %s AND kind = %s AND expires > %s"
            " ORDER BY recipient, seq", (message_id, MESSAGE, self.clock()))]

    def forget_expired_sender_links(self) -> int:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM sender_links WHERE expires <= %s", (self.clock(),))
            return cursor.rowcount


def _link(row: Row) -> SenderLink:
    return SenderLink(row["link_id"], row["secret_hash"], row["message_id"], row["sender"],
                      row["created"], row["expires"], row["revoked_at"])
