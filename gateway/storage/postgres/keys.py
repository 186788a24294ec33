"""Key-encryption keys for several nodes on one database.

Each pickup has its own data key, wrapped by a key-encryption key (KEK) as on SQLite
(gateway/vault/crypto.py). On SQLite the KEKs are files in the node's keys directory; with
several nodes that would mean a message stored by one node cannot be read through another,
and a `keys rotate` on one node is unknown to the rest. So here:

- the KEKs live in the database: the KEK of each expiry epoch (gateway/vault/epochs.py)
  in table `epoch_keys`, made by the first node that stores a pickup of that epoch and
  found there by every other, wrapped (AES-256-GCM, its id as additional data) by that
  epoch's key from the **epoch chain** (epoch_chain.py) mixed with the **master key**; the
  KEKs of the ring before epochs in table `keys`, wrapped by the master key alone, until
  what they wrapped has expired. Table `key_ring` holds the master key's id, the
  generation (a rotation raises it, and every node's next pickup gets a new epoch KEK
  without a restart) and the furthest chain link any node reached. Purge deletes a KEK's
  row once it wraps nothing any more, and every node's expiry turn moves its chain past
  the epochs that are gone (gateway/vault/shredding.py): then not even a dump of the
  database taken before holds an epoch KEK that this node's keys unwrap.
- the master key is the file `master.key` in storage.keys_dir (default <dir>/keys), 32
  random bytes, mode 0600, and the chain's link a file `epoch-chain-<YYYYMMDD>.key` next to
  it, both created by the first node that starts on an empty database and copied by the
  admin to every other node (the whole directory), like a TLS key. Neither is ever written
  to the database, so a database backup alone decrypts nothing.
- `key_ring` names the master that wraps the KEKs (`master_id`, a fingerprint, not the key)
  and fingerprints the furthest link, so a node started with a missing or different master
  key or chain refuses to start with a message saying what it needs, instead of failing on
  the first pickup.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from datetime import date
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.storage.durable import fsync_dir
from gateway.storage.postgres.connection import Cursor, Database, lock_key
from gateway.storage.postgres.epoch_chain import EpochChain, day_before, fingerprint
from gateway.storage.protocols import KEY_DESTROYED, AuditEvent, Clock, KeyUsage
from gateway.vault import crypto
from gateway.vault.epochs import epoch_key_id, epoch_of, key_epoch

MASTER_FILE = "master.key"
CHAIN_FILES = "epoch-chain-*.key"
NONCE_SIZE = 12
MASTER_SIZE = 32


class MasterKeyError(OSError):
    """This node's master key is missing or is not the one the database's keys need."""


def master_id(master: bytes) -> str:
    """A fingerprint that names the master key without revealing it."""
    return hmac.new(master, b"sealgate master key id", hashlib.sha256).hexdigest()[:16]


class DatabaseKeyRing(crypto.KeyRing):
    """crypto.KeyRing with the KEKs in the database, the master key and the epoch chain in
    DIRECTORY."""

    def __init__(self, db: Database, directory: Path, clock: Clock = time.time) -> None:
        super().__init__(directory)
        self.db = db
        self.clock = clock
        self.master = b""
        self.chain = EpochChain(directory)

    def open(self) -> None:
        """Load the master key and the epoch chain, or create them on a database that has
        none yet; MasterKeyError when this node cannot decrypt the database's keys."""
        with self.db.transaction() as cursor:
            lock_key(cursor, "sealgate:keys")
            ring = cursor.execute("SELECT * FROM key_ring").fetchone()
            path = self.directory / MASTER_FILE
            if ring is None:
                self.master = _read_or_create_master(path)
                _check_size(path, self.master)
                cursor.execute("INSERT INTO key_ring (master_id) VALUES (%s)",
                               (master_id(self.master),))
            else:
                self.master = _load_master(path, ring["master_id"])
            self._join_chain(cursor, None if ring is None else ring["chain_day"],
                             None if ring is None else ring["chain_check"])

    def _join_chain(self, cursor: Cursor, furthest: date | None, check: str | None) -> None:
        """This node's link of the epoch chain: made by the first node (on a new database or
        one from before epoch keys), checked against the furthest link any node reached,
        and moved up to it (a node that was down catches up)."""
        if furthest is None:
            if not self.chain.exists():
                self.chain.create(day_before(self._today()))
        elif not self.chain.exists():
            raise MasterKeyError(
                f"{self.directory}/{CHAIN_FILES} is missing: copy the keys directory"
                " (master.key and the epoch chain) from a node of this cluster")
        elif self.chain.day() <= furthest:
            if fingerprint(self.chain.link_at(furthest)) != check:
                raise MasterKeyError(
                    f"{self.directory}/{CHAIN_FILES} is not this cluster's epoch chain: copy"
                    " the keys directory from a node of this cluster")
            self.chain.advance(furthest)
        self._record_link(cursor)

    def _record_link(self, cursor: Cursor) -> None:
        day = self.chain.day()
        cursor.execute("UPDATE key_ring SET chain_day = %s, chain_check = %s"
                       " WHERE chain_day IS NULL OR chain_day < %s",
                       (day, fingerprint(self.chain.link_at(day)), day))

    def _today(self) -> date:
        now = self.clock()
        return epoch_of(now, now)

    def retire_epochs(self, now: float) -> None:
        """Move this node's epoch chain past every epoch that no KEK row needs any more: up
        to the oldest epoch KEK left, at most to yesterday (a node whose clock is a little
        behind may still store a message of what is yesterday here), or to the furthest
        link another node reached."""
        with self.db.transaction() as cursor:
            lock_key(cursor, "sealgate:keys")
            [ring] = cursor.execute("SELECT chain_day FROM key_ring").fetchall()
            [oldest] = cursor.execute("SELECT min(id) AS id FROM epoch_keys").fetchall()
            target = day_before(epoch_of(now, now))
            oldest_epoch = key_epoch(oldest["id"]) if oldest["id"] else None
            if oldest_epoch is not None and oldest_epoch < target:
                target = oldest_epoch
            if ring["chain_day"] is not None and ring["chain_day"] > target:
                target = ring["chain_day"]  # safe: the node that reached it checked so
            self.chain.advance(target)
            self._record_link(cursor)

    def prepare(self) -> None:
        """Nothing: open() made what is needed."""

    def generation(self) -> int:
        [row] = self.db.query("SELECT generation FROM key_ring")
        return int(row["generation"])

    def rotate(self) -> int:
        """A new generation for every node at once: their next pickups get new epoch KEKs."""
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE key_ring SET generation = generation + 1"
                           " RETURNING generation")
            row = cursor.fetchone()
        assert row is not None  # open() made the row
        return int(row["generation"])

    def epoch_key(self, epoch: date) -> tuple[str, bytes]:
        """EPOCH's KEK of the current generation; the first node that needs it makes it, and
        a node making it at the same moment gets the one that was committed first. (An
        epoch the chain has already left, asked for by a node whose clock is behind, gets
        the chain's first epoch instead: its KEK lives a little longer.)"""
        epoch = max(epoch, self.chain.day())
        with self.db.transaction() as cursor:
            [row] = cursor.execute("SELECT generation FROM key_ring").fetchall()
            key_id = epoch_key_id(epoch, int(row["generation"]))
            kek = AESGCM.generate_key(bit_length=256)
            wrapping = self.chain.wrapping_key(epoch, self.master)
            cursor.execute("INSERT INTO epoch_keys (id, wrapped_by, wrapped, created)"
                           " VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING id",
                           (key_id, fingerprint(wrapping), _wrap(wrapping, key_id, kek),
                            time.time()))
            if cursor.fetchone() is not None:
                return key_id, kek
        return key_id, self.kek(key_id)

    def kek(self, key_id: str) -> bytes:
        """Epoch KEKs are read (and unwrapped) each time, never cached: once purge on any
        node destroyed one, no node holds it any more."""
        if key_id in self._cache:
            return self._cache[key_id]
        legacy = key_epoch(key_id) is None
        found = self.db.query("SELECT wrapped FROM keys WHERE id = %s" if legacy else
                              "SELECT wrapped FROM epoch_keys WHERE id = %s", (key_id,))
        if not found:
            raise crypto.DecryptionError(f"key-encryption key {key_id} is missing"
                                         " (destroyed once what it wrapped expired?)")
        epoch = key_epoch(key_id)
        wrapping = self.master if epoch is None else self.chain.wrapping_key(epoch, self.master)
        kek = _unwrap(wrapping, key_id, bytes(found[0]["wrapped"]))
        if legacy:
            self._cache[key_id] = kek
        return kek

    def key_ids(self) -> list[str]:
        return sorted(str(r["id"]) for r in self.db.query(
            "SELECT id FROM keys UNION ALL SELECT id FROM epoch_keys"))

    def destroy(self, key_id: str) -> bool:
        with self.db.transaction() as cursor:
            return self.delete(cursor, key_id)

    def delete(self, cursor: Cursor, key_id: str) -> bool:
        """Delete KEY_ID's row on CURSOR's transaction. (Its bytes stay in the table's freed
        pages until VACUUM: purge runs it after destroying keys.)"""
        self._cache.pop(key_id, None)
        table = "keys" if key_epoch(key_id) is None else "epoch_keys"
        cursor.execute(f"DELETE FROM {table} WHERE id = %s RETURNING id",  # noqa: S608
                       (key_id,))
        return cursor.fetchone() is not None



def _wrap(wrapping: bytes, key_id: str, kek: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_SIZE)
    return nonce + AESGCM(wrapping).encrypt(nonce, kek, _aad(key_id))


def _unwrap(wrapping: bytes, key_id: str, wrapped: bytes) -> bytes:
    try:
        return AESGCM(wrapping).decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:],
                                        _aad(key_id))
    except InvalidTag:
        raise crypto.DecryptionError(f"key-encryption key {key_id} failed authentication"
                                     " with this node's keys") from None


def _load_master(path: Path, wanted: str) -> bytes:
    if not path.exists():
        raise MasterKeyError(
            f"{path} is missing: copy it from a node of this cluster (the database's"
            f" keys were wrapped by master key {wanted})")
    master = path.read_bytes()
    _check_size(path, master)
    if master_id(master) != wanted:
        raise MasterKeyError(
            f"{path} is master key {master_id(master)}, but the database's keys were"
            f" wrapped by master key {wanted}: copy that one from a node of this cluster")
    return master


class PostgresKeys:
    """The KeyStore part of PostgresStorage: the rows of the key ring, what each still wraps
    from table pickups, and their destruction audited in table audit."""

    db: Database
    keys: crypto.KeyRing  # a DatabaseKeyRing
    clock: Clock

    def key_usage(self) -> list[KeyUsage]:
        wrapped = {r["key_id"]: r for r in self.db.query(
            "SELECT key_id, count(*) AS n, max(expires) AS last FROM pickups GROUP BY key_id")}
        ids = sorted(set(self.keys.key_ids()) | set(wrapped))
        return [KeyUsage(i, int(wrapped[i]["n"]) if i in wrapped else 0,
                         wrapped[i]["last"] if i in wrapped else None) for i in ids]

    def rotate_keys(self) -> int:
        return self.keys.rotate()

    def destroy_key(self, key_id: str, client: str, detail: str) -> bool:
        """The row and its audit event in one transaction."""
        ring = self.keys
        assert isinstance(ring, DatabaseKeyRing)
        with self.db.transaction() as cursor:
            if not ring.delete(cursor, key_id):
                return False
            cursor.execute("INSERT INTO audit (pickup_id, at, event, client, detail)"
                           " VALUES (%s, %s, %s, %s, %s)",
                           (f"key:{key_id}", self.clock(), KEY_DESTROYED, client, detail))
        return True

    def retire_epochs(self, now: float) -> None:
        ring = self.keys
        assert isinstance(ring, DatabaseKeyRing)
        ring.retire_epochs(now)

    def key_destructions(self) -> list[AuditEvent]:
        return [AuditEvent(r["pickup_id"], r["at"], r["event"], r["client"], r["detail"])
                for r in self.db.query("SELECT * FROM audit WHERE event = %s ORDER BY at, id",
                                       (KEY_DESTROYED,))]


def _check_size(path: Path, master: bytes) -> None:
    if len(master) != MASTER_SIZE:
        raise MasterKeyError(f"{path} is not a master key ({MASTER_SIZE} bytes)")


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
