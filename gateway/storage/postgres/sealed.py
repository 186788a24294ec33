"""Encrypted blobs in the database or a BlobStore (S3), with the same format, keys and
two-pass streaming read as the files of the SQLite back-end (gateway/vault/crypto.py):
crypto's streaming encryption writes into blob_chunks (or the store) instead of a file,
and its BlobReader reads from them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from typing import BinaryIO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.storage.postgres.blobs import write_blob
from gateway.storage.postgres.connection import Cursor
from gateway.vault import crypto

# crypto.py's file functions take paths; its streaming pieces below are the same ones they
# use, so both back-ends write and read one format.
_aad = crypto._aad
_encrypted_chunks = crypto._encrypted_chunks
_read_layout = crypto._read_layout


def new_data_key(ring: crypto.KeyRing, record_id: str, recipient: str, epoch: date
                 ) -> tuple[bytes, crypto.SealedKey]:
    """A fresh data key for RECORD_ID and its copy sealed under the KEK of EPOCH. (Before
    the transaction that stores the blob: the key ring reads the database on its own.)"""
    data_key = AESGCM.generate_key(bit_length=256)
    return data_key, crypto.seal_key(ring, data_key, record_id, recipient, epoch)


def encrypt_into_blob(cursor: Cursor, data_key: bytes, sealed: crypto.SealedKey,
                      source: BinaryIO, blob: str, record_id: str, recipient: str) -> int:
    """Stream SOURCE, encrypted under DATA_KEY, into blob BLOB inside CURSOR's transaction;
    returns the blob's size."""
    return write_blob(cursor, blob, encrypted(data_key, sealed, source, record_id, recipient))


def encrypted(data_key: bytes, sealed: crypto.SealedKey, source: BinaryIO, record_id: str,
              recipient: str) -> Iterator[bytes]:
    """SOURCE encrypted under DATA_KEY, in the blob format, a chunk at a time."""
    aad = _aad(sealed.key_id, record_id, recipient)
    return _encrypted_chunks(source, data_key, sealed.key_id, aad)


def open_sealed_blob(open_blob: Callable[[str], tuple[BinaryIO, int]], ring: crypto.KeyRing,
                     sealed: crypto.SealedKey, blob: str, record_id: str, recipient: str
                     ) -> crypto.BlobReader:
    """Blob BLOB opened for streaming by OPEN_BLOB (a BlobStore's open), its tag verified
    (DecryptionError otherwise; KeyError when it is gone). The caller closes it."""
    data_key = crypto.unseal_key(ring, sealed, record_id, recipient)
    handle, size = open_blob(blob)
    try:
        layout = _read_layout(handle, sealed, size)
        return crypto.BlobReader(handle, data_key, layout, _aad(sealed.key_id, record_id,
                                                                recipient))
    except BaseException:
        handle.close()
        raise
