"""Encryption at rest: round trip, tamper detection, binding to the record, key rotation,
epoch keys and their destruction."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest

from gateway.storage.store import Route, Store
from gateway.vault import crypto
from tests.legacy_keys import legacy_key_file, legacy_sealed_blob

MESSAGE = b"Subject: Lab results\r\nFrom: d@clinic.test\r\n\r\nHbA1c 5.4%\r\n"
EPOCH = date(2026, 12, 23)


@pytest.fixture
def ring(tmp_path: Path) -> crypto.KeyRing:
    return crypto.KeyRing(tmp_path / "keys")


def seal(ring: crypto.KeyRing, tmp_path: Path,
         plaintext: bytes = MESSAGE) -> tuple[crypto.SealedKey, Path]:
    blob = tmp_path / "m.sgb"
    return crypto.encrypt_file(ring, io.BytesIO(plaintext), blob, "rec1", "p@x.test",
                               EPOCH), blob


def test_round_trip_returns_the_plaintext(ring: crypto.KeyRing, tmp_path: Path) -> None:
    sealed, blob = seal(ring, tmp_path)
    assert crypto.decrypt_file(ring, sealed, blob, "rec1", "p@x.test") == MESSAGE


def test_blob_holds_no_plaintext(ring: crypto.KeyRing, tmp_path: Path) -> None:
    _sealed, blob = seal(ring, tmp_path)
    data = blob.read_bytes()
    assert b"HbA1c" not in data and b"Lab results" not in data
    assert data.startswith(crypto.MAGIC)


def test_multi_chunk_message_round_trips(ring: crypto.KeyRing, tmp_path: Path) -> None:
    big = bytes(range(256)) * (3 * crypto.CHUNK_SIZE // 256 + 7)
    sealed, blob = seal(ring, tmp_path, big)
    assert crypto.decrypt_file(ring, sealed, blob, "rec1", "p@x.test") == big


def test_flipped_ciphertext_bit_is_detected(ring: crypto.KeyRing, tmp_path: Path) -> None:
    sealed, blob = seal(ring, tmp_path)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt_file(ring, sealed, blob, "rec1", "p@x.test")


def test_truncated_blob_is_detected(ring: crypto.KeyRing, tmp_path: Path) -> None:
    sealed, blob = seal(ring, tmp_path)
    blob.write_bytes(blob.read_bytes()[:-1])
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt_file(ring, sealed, blob, "rec1", "p@x.test")


@pytest.mark.parametrize("record_id, recipient", [("rec2", "p@x.test"), ("rec1", "q@x.test")])
def test_blob_moved_to_another_record_fails(ring: crypto.KeyRing, tmp_path: Path,
                                             record_id: str, recipient: str) -> None:
    sealed, blob = seal(ring, tmp_path)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt_file(ring, sealed, blob, record_id, recipient)


def test_data_key_is_wrapped_by_the_key_of_its_epoch(ring: crypto.KeyRing,
                                                     tmp_path: Path) -> None:
    sealed, _blob = seal(ring, tmp_path)
    assert sealed.key_id == "e20261223g0" and ring.key_ids() == ["e20261223g0"]


def test_messages_of_one_epoch_share_its_key(ring: crypto.KeyRing, tmp_path: Path) -> None:
    first, _ = seal(ring, tmp_path)
    second, _ = seal(ring, tmp_path)
    assert first.key_id == second.key_id and len(ring.key_ids()) == 1


def test_rotation_gives_later_messages_a_new_key_and_old_keys_still_decrypt(
        ring: crypto.KeyRing, tmp_path: Path) -> None:
    sealed, blob = seal(ring, tmp_path)
    assert ring.rotate() == 1
    newer = crypto.encrypt_file(ring, io.BytesIO(MESSAGE), tmp_path / "n.sgb", "rec2",
                                "p@x.test", EPOCH)
    assert newer.key_id == "e20261223g1"
    reopened = crypto.KeyRing(ring.directory)
    assert crypto.decrypt_file(reopened, sealed, blob, "rec1", "p@x.test") == MESSAGE


def test_key_files_are_private(ring: crypto.KeyRing, tmp_path: Path) -> None:
    sealed, _blob = seal(ring, tmp_path)
    assert (ring.directory / f"kek-{sealed.key_id}.key").stat().st_mode & 0o777 == 0o600


def test_destroyed_epoch_key_is_gone_from_the_directory_and_decrypts_nothing(
        ring: crypto.KeyRing, tmp_path: Path) -> None:
    sealed, blob = seal(ring, tmp_path)
    assert ring.destroy(sealed.key_id)
    assert list(ring.directory.iterdir()) == []  # no temporary copy left either
    with pytest.raises(crypto.DecryptionError, match="missing"):
        crypto.decrypt_file(ring, sealed, blob, "rec1", "p@x.test")


def test_destroying_a_key_overwrites_its_file_before_unlinking_it(
        ring: crypto.KeyRing, tmp_path: Path) -> None:
    sealed, _blob = seal(ring, tmp_path)
    key_file = ring.directory / f"kek-{sealed.key_id}.key"
    kept = tmp_path / "second-name"
    kept.hardlink_to(key_file)  # sees what the destruction did to the file's blocks
    ring.destroy(sealed.key_id)
    assert not key_file.exists() and kept.read_bytes() == bytes(32)


def test_destroying_an_absent_key_says_so(ring: crypto.KeyRing) -> None:
    ring.prepare()
    assert not ring.destroy("e20261223g0")


def test_a_key_of_the_ring_before_epochs_still_decrypts(ring: crypto.KeyRing,
                                                        tmp_path: Path) -> None:
    key_id, kek = legacy_key_file(ring.directory)
    sealed = legacy_sealed_blob(key_id, kek, MESSAGE, tmp_path / "old.sgb", "rec1", "p@x.test")
    assert crypto.decrypt_file(ring, sealed, tmp_path / "old.sgb", "rec1", "p@x.test") == MESSAGE
    assert ring.key_ids() == [key_id]


def test_destroyed_pickup_cannot_be_opened_and_leaves_no_blob(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        message_id = store.enqueue("d@clinic.test", [Route("p@x.test", True, "pickup")], MESSAGE)
        pickup_id = store.store_pickup(message_id, "d@clinic.test", "p@x.test", store.clock() + 60)
        assert store.open_pickup(pickup_id) == MESSAGE
        assert store.destroy_pickup(pickup_id)
        with pytest.raises(KeyError):
            store.open_pickup(pickup_id)
        assert list((tmp_path / "blobs").iterdir()) == []
    finally:
        store.close()


def test_spool_and_database_survive_reopening(tmp_path: Path) -> None:
    store = Store(tmp_path)
    message_id = store.enqueue("d@clinic.test", [Route("p@x.test")], MESSAGE)
    store.close()
    reopened = Store(tmp_path)
    try:
        assert [r.message_id for r in reopened.waiting_recipients()] == [message_id]
        assert reopened.read_spool(message_id) == MESSAGE
    finally:
        reopened.close()


# -- streaming reads (two passes: verify, then decrypt and verify again) ----------------------

def test_streamed_plaintext_equals_decrypt_file(ring: crypto.KeyRing, tmp_path: Path) -> None:
    big = bytes(range(256)) * (3 * crypto.CHUNK_SIZE // 256 + 7)
    sealed, blob = seal(ring, tmp_path, big)
    with crypto.open_blob(ring, sealed, blob, "rec1", "p@x.test") as reader:
        assert reader.size == len(big)
        streamed = list(reader.chunks())
    assert b"".join(streamed) == crypto.decrypt_file(ring, sealed, blob, "rec1", "p@x.test")
    assert max(len(chunk) for chunk in streamed) <= crypto.CHUNK_SIZE  # never the whole


def test_stream_can_be_read_again_from_the_start(ring: crypto.KeyRing, tmp_path: Path) -> None:
    sealed, blob = seal(ring, tmp_path)
    with crypto.open_blob(ring, sealed, blob, "rec1", "p@x.test") as reader:
        assert b"".join(reader.chunks()) == b"".join(reader.chunks()) == MESSAGE


def test_tampered_blob_fails_before_any_plaintext_is_released(ring: crypto.KeyRing,
                                                              tmp_path: Path) -> None:
    sealed, blob = seal(ring, tmp_path, b"x" * (2 * crypto.CHUNK_SIZE))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    with pytest.raises(crypto.DecryptionError):
        crypto.open_blob(ring, sealed, blob, "rec1", "p@x.test")


def test_truncated_blob_fails_to_open_as_a_stream(ring: crypto.KeyRing, tmp_path: Path) -> None:
    sealed, blob = seal(ring, tmp_path)
    blob.write_bytes(blob.read_bytes()[:-1])
    with pytest.raises(crypto.DecryptionError):
        crypto.open_blob(ring, sealed, blob, "rec1", "p@x.test")


def test_blob_changed_after_opening_fails_the_second_pass(ring: crypto.KeyRing,
                                                          tmp_path: Path) -> None:
    sealed, blob = seal(ring, tmp_path, b"y" * (3 * crypto.CHUNK_SIZE))
    with crypto.open_blob(ring, sealed, blob, "rec1", "p@x.test") as reader:
        with blob.open("r+b") as handle:  # in place: the open file sees the change
            handle.seek(blob.stat().st_size // 2)
            byte = handle.read(1)
            handle.seek(-1, 1)
            handle.write(bytes([byte[0] ^ 0x01]))
        with pytest.raises(crypto.DecryptionError):
            for _ in reader.chunks():
                pass


def test_stored_pickup_streams_its_message(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        message_id = store.enqueue("d@clinic.test", [Route("p@x.test", True, "pickup")], MESSAGE)
        pickup_id = store.store_pickup(message_id, "d@clinic.test", "p@x.test", store.clock() + 60)
        with store.open_pickup_stream(pickup_id) as stream:
            assert b"".join(stream.chunks()) == store.open_pickup(pickup_id)
        assert store.destroy_pickup(pickup_id)
        with pytest.raises(KeyError):
            store.open_pickup_stream(pickup_id)
    finally:
        store.close()


def test_destroying_a_key_also_shreds_a_copy_a_crash_left_while_making_it(
        ring: crypto.KeyRing, tmp_path: Path) -> None:
    sealed, _blob = seal(ring, tmp_path)
    key_file = ring.directory / f"kek-{sealed.key_id}.key"
    left = ring.directory / f"{key_file.name}.0badf00d.tmp"
    left.write_bytes(key_file.read_bytes())
    ring.destroy(sealed.key_id)
    assert list(ring.directory.iterdir()) == []


def test_a_generation_file_that_is_not_a_number_is_named_in_the_error(
        ring: crypto.KeyRing, tmp_path: Path) -> None:
    ring.prepare()
    (ring.directory / crypto.GENERATION_FILE).write_text("two\n")
    with pytest.raises(ValueError, match="generation is not a number"):
        seal(ring, tmp_path)
