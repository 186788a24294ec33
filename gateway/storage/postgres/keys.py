"""Key-encryption keys for several nodes on one database.

Each pickup has its own data key, wrapped by a key-encryption key (KEK) as on SQLite
(gateway/vault/crypto.py). On SQLite the KEKs are files in the node's keys directory; with
several nodes that would mean a message stored by one node cannot be read through another,
and a `keys rotate` on one node is unknown to the rest. So here:

- the KEKs live in the `keys` table, each wrapped (AES-256-GCM, its id as additional data)
  by one **master key**; the newest row is the current KEK. A rotation is an INSERT, which
  every node sees on its next pickup without a restart; old KEKs stay and still decrypt.
- the master key is the file `master.key` in storage.keys_dir (default <dir>/keys), 32
  random bytes, mode 0600, created by the first node that starts on an empty database and
  copied by the admin to every other node, like a TLS key. It is never written to the
  database, so a database backup alone decrypts nothing: back the master key up
  separately (or deliberately not, for backups that must never be readable).
- every row names the master that wrapped it (`master_id`, a fingerprint, not the key), so
  a node started with a missing or different master key refuses to start with a message
  saying which key it needs, instead of failing on the first pickup.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.storage.durable import fsync_dir
from gateway.storage.postgres.connection import Cursor, Database, lock_key
from gateway.vault import crypto

MASTER_FILE = "master.key"
NONCE_SIZE = 12
MASTER_SIZE = 32


class MasterKeyError(OSError):
    """This node's master key is missing or is not the one the database's keys need."""


def master_id(master: bytes) -> str:
    """A fingerprint that names the master key without revealing it."""
    return hmac.new(master, b"sealgate master key id", hashlib.sha256).hexdigest()[:16]


class DatabaseKeyRing(crypto.KeyRing):
    """crypto.KeyRing with the KEKs in the database and the master key in DIRECTORY."""

    def __init__(self, db: Database, directory: Path) -> None:
        super().__init__(directory)
        self.db = db
        self.master = b""

    def open(self) -> None:
        """Load the master key, or create it and the first KEK on an empty database;
        MasterKeyError when this node cannot decrypt the database's keys."""
        with self.db.transaction() as cursor:
            lock_key(cursor, "sealgate:keys")
            wanted = cursor.execute("SELECT master_id FROM keys ORDER BY seq DESC LIMIT 1"
                                    ).fetchone()
            path = self.directory / MASTER_FILE
            if wanted is None:
                self.master = _read_or_create_master(path)
                self._insert_kek(cursor)
                return
            if not path.exists():
                raise MasterKeyError(
                    f"{path} is missing: copy it from a node of this cluster (the database's"
                    f" keys were wrapped by master key {wanted['master_id']})")
            self.master = path.read_bytes()
        if len(self.master) != MASTER_SIZE:
            raise MasterKeyError(f"{path} is not a master key ({MASTER_SIZE} bytes)")
        if master_id(self.master) != wanted["master_id"]:
            raise MasterKeyError(
                f"{path} is master key {master_id(self.master)}, but the database's keys were"
                f" wrapped by master key {wanted['master_id']}: copy that one from a node of"
                " this cluster")

    def ensure(self) -> str:
        """The current KEK's id, read each time: a rotation on any node applies at once."""
        [row] = self.db.query("SELECT id FROM keys ORDER BY seq DESC LIMIT 1")
        return str(row["id"])

    def rotate(self) -> str:
        with self.db.transaction() as cursor:
            return self._insert_kek(cursor)

    def kek(self, key_id: str) -> bytes:
        if key_id not in self._cache:
            found = self.db.query("SELECT wrapped FROM keys WHERE id = %s", (key_id,))
            if not found:
                raise crypto.DecryptionError(f"key-encryption key {key_id} is missing")
            self._cache[key_id] = self._unwrap(key_id, bytes(found[0]["wrapped"]))
        return self._cache[key_id]

    def key_ids(self) -> list[str]:
        return sorted(str(r["id"]) for r in self.db.query("SELECT id FROM keys"))

    def _insert_kek(self, cursor: Cursor) -> str:
        key_id = secrets.token_hex(4)
        kek = AESGCM.generate_key(bit_length=256)
        nonce = secrets.token_bytes(NONCE_SIZE)
        wrapped = nonce + AESGCM(self.master).encrypt(nonce, kek, _aad(key_id))
        cursor.execute("INSERT INTO keys (id, master_id, wrapped, created)"
                       " VALUES (%s, %s, %s, %s)",
                       (key_id, master_id(self.master), wrapped, time.time()))
        self._cache[key_id] = kek
        return key_id

    def _unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        try:
            return AESGCM(self.master).decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:],
                                               _aad(key_id))
        except InvalidTag:
            raise crypto.DecryptionError(f"key-encryption key {key_id} failed authentication"
                                         " with this node's master key") from None


def _aad(key_id: str) -> bytes:
    return b"sealgate-kek|" + key_id.encode()


def _read_or_create_master(path: Path) -> bytes:
    """The master key at PATH, created (0600, fsync'ed) when there is none yet."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    master = AESGCM.generate_key(bit_length=256)
    with os.fdopen(fd, "wb") as handle:
        handle.write(master)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(path.parent)
    return master
