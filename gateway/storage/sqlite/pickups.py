"""Pickups in SQLite (table pickups) with their encrypted blobs as files: storing a message
for pickup (with its queue rows, in one transaction), a recipient's inbox, the replies kept
in a message's thread, reading and destroying them."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

from gateway.queue.model import State
from gateway.storage.durable import remove_durably
from gateway.storage.ids import new_pickup_id, new_queue_id
from gateway.storage.protocols import Pickup, Route, Settlement, StagedPickup
from gateway.storage.sqlite.queue import SQLiteSpoolRelease, insert_message, settle_rows
from gateway.storage.sqlite.spool import SpoolFiles
from gateway.vault import crypto

MESSAGE, REPLY = "message", "reply"
# Runs inside the transaction that inserts the pickup row (given the pickup id); False
# rolls everything back and stores nothing.
AlongWith = Callable[[sqlite3.Connection, str], bool]


class _LeaseLost(Exception):
    """The recipient is no longer this owner's to settle: roll the pickup back."""


class SQLitePickups(SQLiteSpoolRelease):
    keys: crypto.KeyRing
    blob_dir: Path
    spool_files: SpoolFiles
    owner: str

    # -- storing ---------------------------------------------------------------------

    def store_pickup(self, message_id: str, sender: str, recipient: str, expires: float, *,
                     pickup_id: str | None = None) -> str:
        return self._seal(message_id, sender, recipient, expires, pickup_id or new_pickup_id())

    def stage_pickup(self, staged: StagedPickup) -> str | None:
        notification = staged.notification
        notification_id = new_queue_id()
        self.spool_files.write(notification_id, [notification.content])

        def settle_and_notify(db: sqlite3.Connection, _pickup_id: str) -> bool:
            # Like every settlement: only while this owner holds the lease.
            stored = Settlement(staged.message_id, {staged.rcpt: staged.reply}, State.PICKUP)
            if not settle_rows(db, stored, self.owner, self.clock()):
                return False
            insert_message(db, notification_id, notification.sender, [notification.route],
                           len(notification.content), self.clock())
            return True

        try:
            self._seal(staged.message_id, staged.sender, staged.rcpt, staged.expires,
                       staged.pickup_id, settle_and_notify)
        except BaseException as exc:
            self.spool_files.discard(notification_id)  # never queued: a retry writes anew
            if isinstance(exc, _LeaseLost):
                return None
            raise
        self.release_spool_if_done(staged.message_id)
        return staged.pickup_id

    def store_reply(self, root_id: str, queue_id: str, author: str, to: str, size: int) -> str:
        """In one transaction, so the queue runner cannot remove the spool file before the
        encrypted copy exists. KeyError when the root has expired or gone."""
        root = self.get_pickup(root_id)
        if root is None:
            raise KeyError(root_id)

        def queue_and_link(db: sqlite3.Connection, pickup_id: str) -> bool:
            insert_message(db, queue_id, author, [Route(to, mode="internal")], size,
                           self.clock())
            db.execute("UPDATE pickups SET kind=?, thread_id=? WHERE id=?",
                       (REPLY, root_id, pickup_id))
            db.execute("UPDATE pickups SET replied_at=? WHERE id=?", (self.clock(), root_id))
            return True

        return self._seal(queue_id, author, root.recipient, root.expires, new_pickup_id(),
                          queue_and_link)

    def _seal(self, message_id: str, sender: str, recipient: str, expires: float,
              pickup_id: str, along_with: AlongWith | None = None) -> str:
        """Encrypt the spooled MESSAGE_ID for RECIPIENT and insert its row, with ALONG_WITH
        in the same transaction; raises _LeaseLost when ALONG_WITH refused."""
        blob = self.blob_dir / f"{pickup_id}.sgb"
        try:
            with self.spool_files.path(message_id).open("rb") as source:
                sealed = crypto.encrypt_file(self.keys, source, blob, pickup_id, recipient)
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO pickups (id, message_id, sender, recipient, created, expires,"
                    " key_id, wrapped_key, blob, read_at, size) VALUES (?,?,?,?,?,?,?,?,?,NULL,?)",
                    (pickup_id, message_id, sender, recipient.lower(), self.clock(), expires,
                     sealed.key_id, sealed.wrapped, blob.name, blob.stat().st_size),
                )
                if along_with is not None and not along_with(db, pickup_id):
                    raise _LeaseLost(f"{message_id} to {recipient}")  # rolls the row back
        except BaseException:
            with contextlib.suppress(OSError):  # no row points at it: a retry writes a new one
                blob.unlink()
            raise
        return pickup_id

    # -- reading ---------------------------------------------------------------------

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

    def inbox(self, recipient: str) -> list[Pickup]:
        return [_pickup(r) for r in self.query(
            "SELECT * FROM pickups WHERE recipient=? AND kind=? AND expires > ?"
            " ORDER BY created DESC, rowid DESC", (recipient.lower(), MESSAGE, self.clock()))]

    def thread_replies(self, root_id: str, owner: str) -> list[Pickup]:
        return [_pickup(r) for r in self.query(
            "SELECT * FROM pickups WHERE thread_id=? AND kind=? AND recipient=? AND expires > ?"
            " ORDER BY created, rowid", (root_id, REPLY, owner.lower(), self.clock()))]

    def open_pickup(self, pickup_id: str) -> bytes:
        """The decrypted original message; raises KeyError when gone, DecryptionError when
        tampered."""
        return crypto.decrypt_file(self.keys, *self.sealed_blob(pickup_id))

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

    def mark_pickup_read(self, pickup_id: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE pickups SET read_at=coalesce(read_at, ?) WHERE id=?",
                       (self.clock(), pickup_id))

    def expired_pickups(self) -> list[str]:
        return [r["id"] for r in self.query("SELECT id FROM pickups WHERE expires <= ?",
                                            (self.clock(),))]

    # -- destroying ------------------------------------------------------------------

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


def _pickup(row: sqlite3.Row) -> Pickup:
    return Pickup(row["id"], row["message_id"], row["sender"], row["recipient"], row["created"],
                  row["expires"], row["read_at"], row["size"], row["kind"], row["thread_id"],
                  row["replied_at"], row["key_id"] or "")


pickup_from_row = _pickup  # the sender links read pickups too (sender_links.py)
