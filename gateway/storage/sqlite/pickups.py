"""Pickups as the portal sees them (table pickups): a recipient's inbox, the replies kept in
a message's thread, and storing a reply together with its queue rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

# Store inherits this part, so store.py is still loading when this module is: its names are
# looked up at call time only.
from gateway.storage import store as _store
from gateway.storage.sqlite.base import SQLitePart
from gateway.vault import crypto

if TYPE_CHECKING:
    from gateway.storage.store import Pickup, Route

MESSAGE, REPLY = "message", "reply"


class SQLitePickups(SQLitePart):
    keys: crypto.KeyRing
    blob_dir: Path

    # Provided by Store; declared here so that this part type-checks on its own.
    def get_pickup(self, pickup_id: str) -> Pickup | None:
        raise NotImplementedError

    def store_pickup(self, message_id: str, sender: str, recipient: str, expires: float,
                     then: Callable[[sqlite3.Connection, str], None] | None = None,
                     pickup_id: str | None = None) -> str:
        raise NotImplementedError

    def insert_queue_rows(self, db: sqlite3.Connection, message_id: str, sender: str,
                          routes: list[Route], size: int, client: str = "",
                          smtputf8: bool = False) -> None:
        raise NotImplementedError

    def open_pickup_stream(self, pickup_id: str) -> crypto.BlobReader:
        """The decrypted message as a stream, its tag verified; KeyError when gone,
        crypto.DecryptionError when tampered. The caller closes it."""
        return crypto.open_blob(self.keys, *self.sealed_blob(pickup_id))

    def sealed_blob(self, pickup_id: str) -> tuple[crypto.SealedKey, Path, str, str]:
        """What decrypting a current pickup needs: its sealed key, blob path, id and
        recipient; KeyError when it is gone or expired."""
        rows = self.query("SELECT * FROM pickups WHERE id=? AND expires > ?",
                          (pickup_id, self.clock()))
        if not rows:
            raise KeyError(pickup_id)
        row = rows[0]
        sealed = crypto.SealedKey(row["key_id"], row["wrapped_key"])
        return sealed, self.blob_dir / row["blob"], row["id"], row["recipient"]

    def inbox(self, recipient: str) -> list[Pickup]:
        return [_store._pickup(r) for r in self.query(
            "SELECT * FROM pickups WHERE recipient=? AND kind=? AND expires > ?"
            " ORDER BY created DESC, rowid DESC", (recipient.lower(), MESSAGE, self.clock()))]

    def thread_replies(self, root_id: str, owner: str) -> list[Pickup]:
        return [_store._pickup(r) for r in self.query(
            "SELECT * FROM pickups WHERE thread_id=? AND kind=? AND recipient=? AND expires > ?"
            " ORDER BY created, rowid", (root_id, REPLY, owner.lower(), self.clock()))]

    def store_reply(self, root_id: str, queue_id: str, author: str, to: str, size: int) -> str:
        """In one transaction, so the queue runner cannot remove the spool file before the
        encrypted copy exists. KeyError when the root has expired or gone."""
        root = self.get_pickup(root_id)
        if root is None:
            raise KeyError(root_id)

        def queue_and_link(db: sqlite3.Connection, pickup_id: str) -> None:
            self.insert_queue_rows(db, queue_id, author, [_store.Route(to, mode="internal")], size)
            db.execute("UPDATE pickups SET kind=?, thread_id=? WHERE id=?",
                       (REPLY, root_id, pickup_id))
            db.execute("UPDATE pickups SET replied_at=? WHERE id=?", (self.clock(), root_id))

        return self.store_pickup(queue_id, sender=author, recipient=root.recipient,
                                 expires=root.expires, then=queue_and_link)
