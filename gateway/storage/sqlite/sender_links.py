"""Sender links in SQLite (table sender_links), and the pickups of one message they show."""

from __future__ import annotations

import sqlite3

from gateway.storage.protocols import Pickup, SenderLink
from gateway.storage.sqlite.base import SQLitePart
from gateway.storage.sqlite.pickups import MESSAGE, pickup_from_row


class SQLiteSenderLinks(SQLitePart):
    def put_sender_link(self, link: SenderLink) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO sender_links (link_id, secret_hash, message_id, sender,"
                       " created, expires, revoked_at) VALUES (?,?,?,?,?,?,?)",
                       (link.link_id, link.secret_hash, link.message_id, link.sender,
                        link.created, link.expires, link.revoked_at))

    def get_sender_link(self, link_id: str) -> SenderLink | None:
        rows = self.query("SELECT * FROM sender_links WHERE link_id=? AND expires > ?",
                          (link_id, self.clock()))
        return _link(rows[0]) if rows else None

    def mark_sender_link_revoked(self, link_id: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE sender_links SET revoked_at=coalesce(revoked_at, ?)"
                       " WHERE link_id=?", (self.clock(), link_id))

    def message_pickups(self, message_id: str) -> list[Pickup]:
        return [pickup_from_row(r) for r in self.query(
            "SELECT * FROM pickups WHERE message_id=? AND kind=? AND expires > ?"
            " ORDER BY recipient, rowid", (message_id, MESSAGE, self.clock()))]

    def forget_expired_sender_links(self) -> int:
        with self.transaction() as db:
            return db.execute("DELETE FROM sender_links WHERE expires <= ?",
                              (self.clock(),)).rowcount


def _link(row: sqlite3.Row) -> SenderLink:
    return SenderLink(row["link_id"], row["secret_hash"], row["message_id"], row["sender"],
                      row["created"], row["expires"], row["revoked_at"])
