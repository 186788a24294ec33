"""Messages stored encrypted for pickup (table pickups, blobs "pickup:<id>") and the portal
replies kept in their thread.

With blobs in the database (blob_chunks), storing encrypts the spooled copy inside the
transaction that inserts the pickup row, so there is never a row without its blob, nor an
orphan blob to sweep. With an external BlobStore (storage.blobs = "s3"), the encrypted
copy is uploaded completely inside that transaction, before its commit: a row never
points at a blob that is not there. A transaction that then fails leaves an object no
row names; so does destroying, which removes the row first and the object after the
commit. clean_pickup_debris sweeps those once they are PICKUP_DEBRIS_AGE old."""

from __future__ import annotations

from gateway.storage.blob_store import BlobStore, BlobStoreError
from gateway.storage.postgres.blobs import ChunkTableBlobs, delete_blob, write_blob
from gateway.storage.postgres.connection import Cursor, Row, fetch_in
from gateway.storage.postgres.sealed import encrypted, new_data_key, open_sealed_blob
from gateway.storage.postgres.spool import PostgresSpool
from gateway.storage.store import Pickup, Route, new_pickup_id
from gateway.vault import crypto

MESSAGE, REPLY = "message", "reply"
PICKUP_PREFIX = "pickup:"
# An uploaded pickup blob without its row is debris once this old: younger ones may belong
# to a transaction (on any node) that has uploaded and not yet committed.
PICKUP_DEBRIS_AGE = 3600.0


def pickup_blob(pickup_id: str) -> str:
    return f"{PICKUP_PREFIX}{pickup_id}"


def _pickup(row: Row) -> Pickup:
    return Pickup(row["id"], row["message_id"], row["sender"], row["recipient"], row["created"],
                  row["expires"], row["read_at"], row["size"], row["kind"], row["thread_id"],
                  row["replied_at"])


class PostgresPickups(PostgresSpool):
    """Built on the spool: a pickup is encrypted from the spooled copy, and a reply is
    queued with the spool's queue rows."""

    keys: crypto.KeyRing
    external_blobs: BlobStore | None = None  # None: pickup blobs in blob_chunks

    def store_pickup(self, message_id: str, sender: str, recipient: str, expires: float, *,
                     pickup_id: str | None = None) -> str:
        pickup_id = pickup_id or new_pickup_id()
        keys = new_data_key(self.keys, pickup_id, recipient)
        with self.db.transaction() as cursor:
            self._insert_pickup(cursor, keys, pickup_id, message_id, sender, recipient, expires)
        return pickup_id

    def store_reply(self, root_id: str, queue_id: str, author: str, to: str, size: int) -> str:
        """The reply's encrypted copy, its place in the thread, the root marked replied and
        the reply queued for the internal relay: one transaction. KeyError when the root
        has expired or gone."""
        root = self.get_pickup(root_id)
        if root is None:
            raise KeyError(root_id)
        pickup_id = new_pickup_id()
        keys = new_data_key(self.keys, pickup_id, root.recipient)
        with self.db.transaction() as cursor:
            self._insert_pickup(cursor, keys, pickup_id, queue_id, author, root.recipient,
                                root.expires, kind=REPLY, thread_id=root_id)
            cursor.execute("UPDATE pickups SET replied_at = %s WHERE id = %s",
                           (self.clock(), root_id))
            self.insert_queue_rows(cursor, queue_id, author, [Route(to, mode="internal")], size)
        return pickup_id

    def _insert_pickup(self, cursor: Cursor, keys: tuple[bytes, crypto.SealedKey],
                       pickup_id: str, message_id: str, sender: str, recipient: str,
                       expires: float, kind: str = MESSAGE, thread_id: str | None = None
                       ) -> None:
        """Encrypt the spooled MESSAGE_ID under KEYS (data key, sealed copy) and insert its
        row, all on CURSOR's connection."""
        blob = pickup_blob(pickup_id)
        data_key, sealed = keys
        with self.open_spool_file(message_id, fetch_in(cursor)) as source:
            chunks = encrypted(data_key, sealed, source, pickup_id, recipient)
            if self.external_blobs is None:
                size = write_blob(cursor, blob, chunks)
            else:  # complete in the store before the row can commit
                size = self.external_blobs.put(blob, chunks)
        cursor.execute(
            "INSERT INTO pickups (id, message_id, sender, recipient, created, expires, key_id,"
            " wrapped_key, blob, read_at, size, kind, thread_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, %s, %s, %s)",
            (pickup_id, message_id, sender, recipient.lower(), self.clock(), expires,
             sealed.key_id, sealed.wrapped, blob, size, kind, thread_id))

    def get_pickup(self, pickup_id: str) -> Pickup | None:
        rows = self.db.query("SELECT * FROM pickups WHERE id = %s AND expires > %s",
                             (pickup_id, self.clock()))
        return _pickup(rows[0]) if rows else None

    def list_pickups(self, recipient: str | None = None) -> list[Pickup]:
        if recipient is None:
            rows = self.db.query("SELECT * FROM pickups ORDER BY created DESC, seq DESC")
        else:
            rows = self.db.query("SELECT * FROM pickups WHERE recipient = %s AND expires > %s"
                                 " ORDER BY created DESC, seq DESC",
                                 (recipient.lower(), self.clock()))
        return [_pickup(r) for r in rows]

    def inbox(self, recipient: str) -> list[Pickup]:
        return [_pickup(r) for r in self.db.query(
            "SELECT * FROM pickups WHERE recipient = %s AND kind = %s AND expires > %s"
            " ORDER BY created DESC, seq DESC", (recipient.lower(), MESSAGE, self.clock()))]

    def thread_replies(self, root_id: str, owner: str) -> list[Pickup]:
        return [_pickup(r) for r in self.db.query(
            "SELECT * FROM pickups WHERE thread_id = %s AND kind = %s AND recipient = %s"
            " AND expires > %s ORDER BY created, seq",
            (root_id, REPLY, owner.lower(), self.clock()))]

    def open_pickup(self, pickup_id: str) -> bytes:
        """The decrypted message, released only after its tag verified; KeyError when gone,
        crypto.DecryptionError when tampered."""
        with self.open_pickup_stream(pickup_id) as stream:
            return b"".join(stream.chunks())

    def open_pickup_stream(self, pickup_id: str) -> crypto.BlobReader:
        """The decrypted message as a stream, its tag verified; the caller closes it."""
        rows = self.db.query("SELECT id, recipient, key_id, wrapped_key, blob FROM pickups"
                             " WHERE id = %s AND expires > %s", (pickup_id, self.clock()))
        if not rows:
            raise KeyError(pickup_id)
        row = rows[0]
        sealed = crypto.SealedKey(row["key_id"], bytes(row["wrapped_key"]))
        blobs = self.external_blobs or ChunkTableBlobs(self.db)
        return open_sealed_blob(blobs.open, self.keys, sealed, row["blob"], row["id"],
                                row["recipient"])

    def mark_pickup_read(self, pickup_id: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE pickups SET read_at = coalesce(read_at, %s) WHERE id = %s",
                           (self.clock(), pickup_id))

    def destroy_conversation(self, pickup_id: str) -> int:
        """Destroy a stored message and the portal replies kept in its thread."""
        replies = [r["id"] for r in self.db.query("SELECT id FROM pickups WHERE thread_id = %s",
                                                  (pickup_id,))]
        return sum(self.destroy_pickup(i) for i in [pickup_id, *replies])

    def destroy_pickup(self, pickup_id: str) -> bool:
        """Blob, wrapped data key and row go in one transaction. (The freed pages keep the
        ciphertext until vacuumed; without the data key it is noise.)"""
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM pickups WHERE id = %s RETURNING blob", (pickup_id,))
            row = cursor.fetchone()
            if row is None:
                return False
            if self.external_blobs is None:
                delete_blob(cursor, row["blob"])
        if self.external_blobs is not None:
            try:
                self.external_blobs.delete(row["blob"])
            except BlobStoreError:
                pass  # without its row (and wrapped key) it is noise; the sweep removes it
        return True

    def clean_pickup_debris(self, min_age: float = PICKUP_DEBRIS_AGE) -> int:
        """Pickup blobs in the external store that no row names, MIN_AGE old or more (by
        the store's clock); 0 with pickups in the database (they cannot be orphaned)."""
        if self.external_blobs is None:
            return 0
        names = self.external_blobs.older_than(PICKUP_PREFIX, min_age)
        if not names:
            return 0
        kept = {r["blob"] for r in self.db.query("SELECT blob FROM pickups WHERE blob = ANY(%s)",
                                                 (names,))}
        return sum(self.external_blobs.delete(n) for n in names if n not in kept)

    def expired_pickups(self) -> list[str]:
        return [r["id"] for r in self.db.query(
            "SELECT id FROM pickups WHERE expires <= %s ORDER BY expires, seq",
            (self.clock(),))]


pickup_from_row = _pickup  # the sender links read pickups too (sender_links.py)
