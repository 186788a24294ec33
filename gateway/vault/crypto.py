"""Encryption at rest: a fresh AES-256-GCM data key per stored message, wrapped by a
key-encryption key (KEK) that carries a key id, so KEKs can rotate while old ones decrypt.

Blob layout (version 1):
    b"SGB1" | len(key_id) (1 byte) | key_id | nonce (12) | ciphertext | tag (16).
The additional authenticated data binds version, key id, record id and recipient, so a
blob or a wrapped key moved to another record fails to decrypt.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.storage.durable import fsync_dir, write_durably

MAGIC = b"SGB1"
NONCE_SIZE = 12
TAG_SIZE = 16
CHUNK_SIZE = 1 << 20


class DecryptionError(Exception):
    """A blob or wrapped key failed authentication: tampered, moved, or the wrong key."""


@dataclass(frozen=True)
class SealedKey:
    key_id: str
    wrapped: bytes


def _aad(key_id: str, record_id: str, recipient: str) -> bytes:
    return b"|".join([MAGIC, key_id.encode(), record_id.encode(), recipient.lower().encode()])


class KeyRing:
    """Key-encryption keys in DIR, one file per key id, mode 0600; `current` names the active
    one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[str, bytes] = {}

    def ensure(self) -> str:
        """The current key id, creating the first key on first start."""
        current = self.directory / "current"
        if current.exists():
            return current.read_text().strip()
        return self.rotate()

    def rotate(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_id = secrets.token_hex(4)
        path = self.directory / f"kek-{key_id}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(AESGCM.generate_key(bit_length=256))
            handle.flush()
            os.fsync(handle.fileno())
        write_durably(self.directory / "current", [key_id.encode()])
        fsync_dir(self.directory)
        return key_id

    def kek(self, key_id: str) -> bytes:
        if key_id not in self._cache:
            if not key_id.isalnum():
                raise DecryptionError(f"malformed key id {key_id!r}")
            try:
                self._cache[key_id] = (self.directory / f"kek-{key_id}.key").read_bytes()
            except FileNotFoundError:
                raise DecryptionError(f"key-encryption key {key_id} is missing") from None
        return self._cache[key_id]

    def key_ids(self) -> list[str]:
        return sorted(p.stem.removeprefix("kek-") for p in self.directory.glob("kek-*.key"))


def seal_key(ring: KeyRing, data_key: bytes, record_id: str, recipient: str) -> SealedKey:
    key_id = ring.ensure()
    nonce = secrets.token_bytes(NONCE_SIZE)
    wrapped = AESGCM(ring.kek(key_id)).encrypt(nonce, data_key, _aad(key_id, record_id, recipient))
    return SealedKey(key_id, nonce + wrapped)


def unseal_key(ring: KeyRing, sealed: SealedKey, record_id: str, recipient: str) -> bytes:
    nonce, wrapped = sealed.wrapped[:NONCE_SIZE], sealed.wrapped[NONCE_SIZE:]
    aad = _aad(sealed.key_id, record_id, recipient)
    try:
        return AESGCM(ring.kek(sealed.key_id)).decrypt(nonce, wrapped, aad)
    except InvalidTag:
        raise DecryptionError("wrapped data key failed authentication") from None


def _encrypted_chunks(source: BinaryIO, key: bytes, key_id: str, aad: bytes) -> Iterator[bytes]:
    nonce = secrets.token_bytes(NONCE_SIZE)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    yield MAGIC + bytes([len(key_id)]) + key_id.encode() + nonce
    while chunk := source.read(CHUNK_SIZE):
        yield encryptor.update(chunk)
    yield encryptor.finalize() + encryptor.tag


def encrypt_file(
    ring: KeyRing, source: BinaryIO, destination: Path, record_id: str, recipient: str
) -> SealedKey:
    """Stream SOURCE into an encrypted blob at DESTINATION; memory use is one chunk."""
    data_key = AESGCM.generate_key(bit_length=256)
    sealed = seal_key(ring, data_key, record_id, recipient)
    aad = _aad(sealed.key_id, record_id, recipient)
    write_durably(destination, _encrypted_chunks(source, data_key, sealed.key_id, aad))
    return sealed


def decrypt_file(ring: KeyRing, sealed: SealedKey, blob: Path, record_id: str,
                 recipient: str) -> bytes:
    """The plaintext of BLOB, released only after its tag verified."""
    data_key = unseal_key(ring, sealed, record_id, recipient)
    with blob.open("rb") as handle:
        header = handle.read(len(MAGIC) + 1)
        if len(header) != len(MAGIC) + 1 or header[: len(MAGIC)] != MAGIC:
            raise DecryptionError("not a Sealgate blob or unknown version")
        key_id = handle.read(header[-1]).decode("ascii", "replace")
        if key_id != sealed.key_id:
            raise DecryptionError("blob key id does not match its record")
        nonce = handle.read(NONCE_SIZE)
        body = handle.read()
    if len(body) < TAG_SIZE:
        raise DecryptionError("blob is truncated")
    decryptor = Cipher(algorithms.AES(data_key), modes.GCM(nonce, body[-TAG_SIZE:])).decryptor()
    decryptor.authenticate_additional_data(_aad(key_id, record_id, recipient))
    try:
        return decryptor.update(body[:-TAG_SIZE]) + decryptor.finalize()
    except InvalidTag:
        raise DecryptionError("blob failed authentication") from None
