"""Messages sealed the way the key ring before epochs did: a KEK with a random hex id (its
file kek-<id>.key), no epoch. What an installation upgraded to epoch keys still holds."""

from __future__ import annotations

import io
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.storage.durable import write_durably
from gateway.vault import crypto


def legacy_key_file(directory: Path) -> tuple[str, bytes]:
    key_id, kek = secrets.token_hex(4), AESGCM.generate_key(bit_length=256)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"kek-{key_id}.key").write_bytes(kek)
    return key_id, kek


def legacy_sealed_blob(key_id: str, kek: bytes, plaintext: bytes, blob: Path, record_id: str,
                       recipient: str) -> crypto.SealedKey:
    """PLAINTEXT in BLOB, its data key wrapped by KEK under KEY_ID, as the old ring wrote."""
    data_key = AESGCM.generate_key(bit_length=256)
    aad = crypto._aad(key_id, record_id, recipient)
    nonce = secrets.token_bytes(crypto.NONCE_SIZE)
    sealed = crypto.SealedKey(key_id, nonce + AESGCM(kek).encrypt(nonce, data_key, aad))
    write_durably(blob, crypto._encrypted_chunks(io.BytesIO(plaintext), data_key, key_id, aad))
    return sealed


def legacy_wrapped_kek(master: bytes, key_id: str, kek: bytes) -> bytes:
    """KEK as a row of the PostgreSQL `keys` table held it: wrapped by the master key."""
    nonce = secrets.token_bytes(crypto.NONCE_SIZE)
    return nonce + AESGCM(master).encrypt(nonce, kek, b"sealgate-kek|" + key_id.encode())
