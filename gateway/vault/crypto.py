"""Encryption at rest: a fresh AES-256-GCM data key per stored message, wrapped by the
key-encryption key (KEK) of the message's expiry epoch (gateway/vault/epochs.py), which
carries a key id: purge destroys an epoch's KEK once its messages are gone
(gateway/vault/shredding.py), and no copy of them decrypts after that.

Blob layout (version 1):
    b"SGB1" | len(key_id) (1 byte) | key_id | nonce (12) | ciphertext | tag (16).
The additional authenticated data binds version, key id, record id and recipient, so a
blob or a wrapped key moved to another record fails to decrypt.

Reading a large blob (open_blob) streams it in two passes over one open file, so memory is
one chunk whatever the size. The tag sits at the end of the blob, so a single streaming pass
would hand out plaintext before anyone knows it is genuine. Instead:
1. the first pass decrypts everything, keeps nothing and checks the tag: a tampered, moved or
   truncated blob fails here, before any plaintext leaves this module;
2. the second pass decrypts again and yields the plaintext chunk by chunk, and checks the tag
   once more at the end: it fails (DecryptionError from the iterator) if the file changed
   between the passes. (A blob is written once and renamed into place, so this takes a
   disk fault or an attacker with write access to the blob directory.)
A consumer must therefore treat what the second pass yielded as good only once the iterator
ended without an error. The portal builds a page only after the whole stream ended; a
download is sent with its Content-Length and holds back its last piece until the tag has
verified, so a blob that changed mid-download ends as a truncated transfer, which browsers
report as a failed download ("Failed - Network error"), never as a complete file.
The alternative, AES-GCM over fixed-size segments with a tag each (as in age or Tink's
streaming AEAD), authenticates every chunk in one pass, but changes the blob format of every
message already stored; two passes cost one extra AES pass (about 1 GB/s) and no migration.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.storage.durable import fsync_dir, remove_durably, write_durably
from gateway.vault.epochs import epoch_key_id, key_epoch

MAGIC = b"SGB1"
NONCE_SIZE = 12
TAG_SIZE = 16
CHUNK_SIZE = 1 << 20
GENERATION_FILE = "generation"


class DecryptionError(Exception):
    """A blob or wrapped key failed authentication: tampered, moved, or the wrong key."""


@dataclass(frozen=True)
class SealedKey:
    key_id: str
    wrapped: bytes


def _aad(key_id: str, record_id: str, recipient: str) -> bytes:
    return b"|".join([MAGIC, key_id.encode(), record_id.encode(), recipient.lower().encode()])


class KeyRing:
    """Key-encryption keys in DIR, one file per key id (kek-<id>.key, mode 0600): the KEK of
    each expiry epoch, made on demand (gateway/vault/epochs.py), and the KEKs of the ring
    before epochs, which only decrypt. `generation` holds the number of `keys rotate`s.

    Epoch KEKs are read from their file each time, never cached: once purge destroyed one,
    no process keeps it in memory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[str, bytes] = {}  # legacy KEKs only

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def generation(self) -> int:
        try:
            return int((self.directory / GENERATION_FILE).read_text())
        except FileNotFoundError:
            return 0
        except ValueError:
            raise ValueError(f"{self.directory / GENERATION_FILE} is not a number: write the"
                             " generation the keys are at (the highest g<N> of keys list)"
                             ) from None

    def rotate(self) -> int:
        """Start a new generation: pickups stored from now on get new epoch KEKs; the
        current ones keep decrypting what they wrapped until it expires."""
        self.prepare()
        generation = self.generation() + 1
        write_durably(self.directory / GENERATION_FILE, [str(generation).encode()])
        return generation

    def epoch_key(self, epoch: date) -> tuple[str, bytes]:
        """The id and KEK of EPOCH in the current generation, made when it is the first."""
        key_id = epoch_key_id(epoch, self.generation())
        path = self._path(key_id)
        if not path.exists():
            self.prepare()
            _create_key_file(path, AESGCM.generate_key(bit_length=256))
        return key_id, self.kek(key_id)

    def kek(self, key_id: str) -> bytes:
        if key_id in self._cache:
            return self._cache[key_id]
        try:
            kek = self._path(key_id).read_bytes()
        except FileNotFoundError:
            raise DecryptionError(f"key-encryption key {key_id} is missing"
                                  " (destroyed once what it wrapped expired?)") from None
        if key_epoch(key_id) is None:
            self._cache[key_id] = kek
        return kek

    def key_ids(self) -> list[str]:
        return sorted(p.stem.removeprefix("kek-") for p in self.directory.glob("kek-*.key"))

    def destroy(self, key_id: str) -> bool:
        """Overwrite KEY_ID's file, unlink it and fsync the directory; False when absent."""
        self._cache.pop(key_id, None)
        path = self._path(key_id)
        for left_by_a_crash in self.directory.glob(f"{path.name}.*.tmp"):
            shred_file(left_by_a_crash)  # a complete copy of the key, or part of one
        if not path.exists():
            return False
        shred_file(path)
        current = self.directory / "current"  # the ring before epochs named its newest key
        if current.exists() and current.read_text().strip() == key_id:
            remove_durably(current)
        return True

    def _path(self, key_id: str) -> Path:
        if not key_id.isalnum():
            raise DecryptionError(f"malformed key id {key_id!r}")
        return self.directory / f"kek-{key_id}.key"


def _create_key_file(path: Path, key: bytes) -> None:
    """KEY at PATH, complete or not at all: written and fsync'ed under a private name, then
    linked into place, so a process that reads PATH never sees half a key. When another
    process linked its key first, that one stays (and both use it: this one reads PATH)."""
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink()
    fsync_dir(path.parent)


def shred_file(path: Path) -> None:
    """Overwrite PATH with zeros (fsync'ed) before unlinking it and fsync'ing its directory:
    the key's bytes do not stay behind in the freed blocks of a simple file system. (A
    copy-on-write or journaling-data file system, or an SSD's wear levelling, may still
    keep old blocks; see the README on key handling.)"""
    with path.open("r+b") as handle:
        handle.write(bytes(os.fstat(handle.fileno()).st_size))
        handle.flush()
        os.fsync(handle.fileno())
    remove_durably(path)


def seal_key(ring: KeyRing, data_key: bytes, record_id: str, recipient: str,
             epoch: date) -> SealedKey:
    """DATA_KEY wrapped by the KEK of EPOCH (the expiry day of RECORD_ID)."""
    key_id, kek = ring.epoch_key(epoch)
    nonce = secrets.token_bytes(NONCE_SIZE)
    wrapped = AESGCM(kek).encrypt(nonce, data_key, _aad(key_id, record_id, recipient))
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


def encrypt_file(ring: KeyRing, source: BinaryIO, destination: Path, record_id: str,
                 recipient: str, epoch: date) -> SealedKey:
    """Stream SOURCE into an encrypted blob at DESTINATION, its data key wrapped by the KEK
    of EPOCH; memory use is one chunk."""
    data_key = AESGCM.generate_key(bit_length=256)
    sealed = seal_key(ring, data_key, record_id, recipient, epoch)
    aad = _aad(sealed.key_id, record_id, recipient)
    write_durably(destination, _encrypted_chunks(source, data_key, sealed.key_id, aad))
    return sealed


@dataclass(frozen=True)
class _BlobLayout:
    nonce: bytes
    body_start: int  # where the ciphertext begins
    ciphertext_size: int


def _read_layout(handle: BinaryIO, sealed: SealedKey, blob_size: int) -> _BlobLayout:
    header = handle.read(len(MAGIC) + 1)
    if len(header) != len(MAGIC) + 1 or header[: len(MAGIC)] != MAGIC:
        raise DecryptionError("not a Sealgate blob or unknown version")
    key_id = handle.read(header[-1]).decode("ascii", "replace")
    if key_id != sealed.key_id:
        raise DecryptionError("blob key id does not match its record")
    nonce = handle.read(NONCE_SIZE)
    body_start = handle.tell()
    if len(nonce) != NONCE_SIZE or blob_size - body_start < TAG_SIZE:
        raise DecryptionError("blob is truncated")
    return _BlobLayout(nonce, body_start, blob_size - body_start - TAG_SIZE)


class BlobReader:
    """The plaintext of one blob, read in two streaming passes (see the module docstring).
    Opening it runs the first pass; chunks() runs a second one each time it is called."""

    def __init__(self, handle: BinaryIO, data_key: bytes, layout: _BlobLayout,
                 aad: bytes) -> None:
        self._handle = handle
        self._key = data_key
        self._layout = layout
        self._aad = aad
        self.size = layout.ciphertext_size  # GCM adds no padding: the plaintext size
        for _ in self._pass():  # the first pass: nothing is kept
            pass

    def chunks(self) -> Iterator[bytes]:
        """The plaintext in chunks of at most CHUNK_SIZE; DecryptionError at the end when the
        blob changed after it was opened: then nothing this pass yielded is to be trusted."""
        return self._pass()

    def _pass(self) -> Iterator[bytes]:
        self._handle.seek(self._layout.body_start + self._layout.ciphertext_size)
        tag = self._handle.read(TAG_SIZE)
        if len(tag) != TAG_SIZE:
            raise DecryptionError("blob is truncated")
        mode = modes.GCM(self._layout.nonce, tag)
        decryptor = Cipher(algorithms.AES(self._key), mode).decryptor()
        decryptor.authenticate_additional_data(self._aad)
        self._handle.seek(self._layout.body_start)
        left = self._layout.ciphertext_size
        while left > 0:
            chunk = self._handle.read(min(CHUNK_SIZE, left))
            if not chunk:
                raise DecryptionError("blob is truncated")
            left -= len(chunk)
            yield decryptor.update(chunk)
        try:
            decryptor.finalize()
        except InvalidTag:
            raise DecryptionError("blob failed authentication") from None

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_blob(ring: KeyRing, sealed: SealedKey, blob: Path, record_id: str,
              recipient: str) -> BlobReader:
    """BLOB opened for streaming, its tag verified (DecryptionError otherwise); memory use is
    one chunk. The caller closes it."""
    data_key = unseal_key(ring, sealed, record_id, recipient)
    handle = blob.open("rb")
    try:
        layout = _read_layout(handle, sealed, os.fstat(handle.fileno()).st_size)
        return BlobReader(handle, data_key, layout, _aad(sealed.key_id, record_id, recipient))
    except BaseException:
        handle.close()
        raise


def decrypt_file(ring: KeyRing, sealed: SealedKey, blob: Path, record_id: str,
                 recipient: str) -> bytes:
    """The plaintext of BLOB, released only after its tag verified."""
    data_key = unseal_key(ring, sealed, record_id, recipient)
    with blob.open("rb") as handle:
        layout = _read_layout(handle, sealed, os.fstat(handle.fileno()).st_size)
        body = handle.read()
    if len(body) < TAG_SIZE:
        raise DecryptionError("blob is truncated")
    mode = modes.GCM(layout.nonce, body[-TAG_SIZE:])
    decryptor = Cipher(algorithms.AES(data_key), mode).decryptor()
    decryptor.authenticate_additional_data(_aad(sealed.key_id, record_id, recipient))
    try:
        return decryptor.update(body[:-TAG_SIZE]) + decryptor.finalize()
    except InvalidTag:
        raise DecryptionError("blob failed authentication") from None
