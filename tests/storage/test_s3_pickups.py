"""storage.blobs = "s3" on PostgreSQL: the encrypted pickups live in the bucket (not in
blob_chunks), a changed object does not decrypt, destroying removes the object, orphans
are swept, large pickups stream both ways; and [storage.s3] is checked with clear errors."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.config import ConfigError, S3Config, check_s3, load_config
from gateway.storage.postgres import open_postgres
from gateway.storage.postgres.storage import PostgresStorage
from gateway.storage.s3 import S3Blobs, S3Settings
from gateway.storage.store import Route
from gateway.vault.crypto import DecryptionError

MiB = 1 << 20
SENDER, PAT = "doctor@clinic.test", "pat@patients.test"


@pytest.fixture
def secret_file(tmp_path: Path, s3_settings: S3Settings) -> Path:
    path = tmp_path / "s3-secret"
    path.write_text(s3_settings.secret_access_key + "\n")
    return path


@pytest.fixture
def pg_s3(postgres_url: str, s3_settings: S3Settings, secret_file: Path,
          tmp_path: Path) -> Iterator[PostgresStorage]:
    from gateway.config import StorageConfig

    config = StorageConfig(dir=str(tmp_path / "var"), backend="postgresql", url=postgres_url,
                           blobs="s3", s3=S3Config(s3_settings.endpoint, s3_settings.bucket,
                                                   s3_settings.region,
                                                   s3_settings.access_key_id, str(secret_file)))
    storage = open_postgres(config)
    yield storage
    storage.close()


@pytest.fixture
def bucket(s3_settings: S3Settings) -> Iterator[S3Blobs]:
    store = S3Blobs(s3_settings)  # a second client: what is in the bucket, seen from outside
    yield store
    store.close()


def stored(storage: PostgresStorage, chunks: Iterator[bytes]) -> str:
    queue_id, _ = storage.spool_stream(chunks)
    return storage.store_pickup(queue_id, SENDER, PAT, storage.clock() + 86400)


def chunk_rows(url: str, name: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        [(rows,)] = conn.execute("SELECT count(*) FROM blob_chunks WHERE blob = %s",
                                 (name,)).fetchall()
        return int(rows)


def test_a_pickup_is_an_object_in_the_bucket_not_rows(pg_s3: PostgresStorage, bucket: S3Blobs,
                                                      postgres_url: str) -> None:
    pickup_id = stored(pg_s3, iter([b"Subject: x\r\n\r\nresults"]))
    pickup = pg_s3.get_pickup(pickup_id)
    assert pickup is not None and bucket.size(f"pickup:{pickup_id}") == pickup.size
    assert chunk_rows(postgres_url, f"pickup:{pickup_id}") == 0
    assert b"results" not in b"".join(bucket.get(f"pickup:{pickup_id}"))  # ciphertext
    assert pg_s3.open_pickup(pickup_id) == b"Subject: x\r\n\r\nresults"


def test_a_changed_object_does_not_decrypt(pg_s3: PostgresStorage, bucket: S3Blobs) -> None:
    pickup_id = stored(pg_s3, iter([b"y" * (2 * MiB)]))
    data = bytearray(b"".join(bucket.get(f"pickup:{pickup_id}")))
    data[MiB] ^= 1
    bucket.put(f"pickup:{pickup_id}", [bytes(data)])
    with pytest.raises(DecryptionError):
        pg_s3.open_pickup(pickup_id)


def test_destroying_a_pickup_removes_its_object(pg_s3: PostgresStorage,
                                                bucket: S3Blobs) -> None:
    pickup_id = stored(pg_s3, iter([b"secret"]))
    assert pg_s3.destroy_pickup(pickup_id) is True
    assert bucket.size(f"pickup:{pickup_id}") is None


def test_objects_no_row_names_are_swept(pg_s3: PostgresStorage, bucket: S3Blobs) -> None:
    kept = stored(pg_s3, iter([b"kept"]))
    bucket.put("pickup:orphan", [b"left by a failed transaction"])
    assert pg_s3.clean_pickup_debris(min_age=0) == 1
    assert bucket.size("pickup:orphan") is None
    assert pg_s3.open_pickup(kept) == b"kept"


def test_young_orphans_are_left_alone(pg_s3: PostgresStorage, bucket: S3Blobs) -> None:
    bucket.put("pickup:uploading", [b"its transaction may not have committed yet"])
    assert pg_s3.clean_spool_debris(min_age=0) == 0
    assert bucket.size("pickup:uploading") is not None


def test_a_large_pickup_streams_both_ways(pg_s3: PostgresStorage) -> None:
    def big() -> Iterator[bytes]:
        yield b"Subject: scan\r\n\r\n"
        for _ in range(40):
            yield b"z" * MiB

    tracemalloc.start()
    try:
        pickup_id = stored(pg_s3, big())
        store_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        with pg_s3.open_pickup_stream(pickup_id) as stream:
            read = sum(len(c) for c in stream.chunks())
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"peak traced memory: storing {store_peak / MiB:.1f} MiB,"
          f" reading {read_peak / MiB:.1f} MiB")
    assert read == 40 * MiB + len(b"Subject: scan\r\n\r\n")
    assert store_peak < 24 * MiB and read_peak < 8 * MiB, (store_peak, read_peak)


def test_a_store_that_fails_while_staging_leaves_the_recipient_to_retry(
        pg_s3: PostgresStorage, s3_settings: S3Settings) -> None:
    """No row without its object: the upload fails, the whole transaction rolls back, the
    recipient stays claimed (its lease runs out and it is tried again), the spool stays."""
    from dataclasses import replace

    from gateway.storage.blob_store import BlobStoreError
    from tests.fakes.ports import free_port
    from tests.storage.test_contract_queue import held_by, staged

    message_id = pg_s3.enqueue(SENDER, [Route(PAT, True, "pickup")], b"Subject: x\r\n\r\nhi")
    pg_s3.claim_due()
    working = pg_s3.external_blobs
    pg_s3.external_blobs = S3Blobs(replace(s3_settings,
                                           endpoint=f"http://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(BlobStoreError):
            pg_s3.stage_pickup(staged(message_id, PAT, "pickup-down", pg_s3.clock() + 86400))
    finally:
        pg_s3.external_blobs.close()
        pg_s3.external_blobs = working
    assert pg_s3.get_pickup("pickup-down") is None and pg_s3.message_count() == 1
    assert held_by(pg_s3, message_id, PAT) == ("delivering", pg_s3.owner)
    assert pg_s3.read_spool(message_id) == b"Subject: x\r\n\r\nhi"


def test_an_unreachable_bucket_fails_opening(postgres_url: str, s3_settings: S3Settings,
                                             secret_file: Path, tmp_path: Path) -> None:
    from gateway.config import StorageConfig
    from gateway.storage.blob_store import BlobStoreError

    config = StorageConfig(dir=str(tmp_path / "var"), backend="postgresql", url=postgres_url,
                           blobs="s3", s3=S3Config(s3_settings.endpoint, "not-made-bucket",
                                                   s3_settings.region,
                                                   s3_settings.access_key_id, str(secret_file)))
    with pytest.raises(BlobStoreError, match="not-made-bucket"):
        open_postgres(config)


# -- [storage.s3] ---------------------------------------------------------------------------


def good(tmp_path: Path) -> S3Config:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    return S3Config("http://127.0.0.1:9000", "sealgate-blobs", "us-east-1", "AKIA1", str(secret))


def test_a_complete_s3_section_passes(tmp_path: Path) -> None:
    config = good(tmp_path)
    check_s3(config)
    assert config.secret_access_key() == "s3cr3t"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("endpoint", "", "storage.s3.endpoint: must be set"),
    ("endpoint", "ftp://host", "storage.s3.endpoint: 'ftp://host' is not a URL"),
    ("endpoint", "http://host/bucket", "the bucket is storage.s3.bucket"),
    ("endpoint", "http://host:99999", "storage.s3.endpoint"),
    ("bucket", "", "storage.s3.bucket"),
    ("bucket", "Has_Capitals", "storage.s3.bucket: 'Has_Capitals' is not a bucket name"),
    ("region", "", "storage.s3.region"),
    ("access_key_id", "", "storage.s3.access_key_id: must be set"),
    ("secret_access_key_file", "", "storage.s3.secret_access_key_file: must be set"),
    ("secret_access_key_file", "/nonexistent/secret", "cannot read /nonexistent/secret"),
])
def test_a_bad_s3_key_is_named(tmp_path: Path, key: str, value: str, message: str) -> None:
    config = good(tmp_path)
    setattr(config, key, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        check_s3(config)


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    config = good(tmp_path)
    Path(config.secret_access_key_file).write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        check_s3(config)


def test_the_s3_table_loads_from_toml_with_the_secret_beside_it(tmp_path: Path) -> None:
    (tmp_path / "s3.secret").write_text("s3cr3t\n")
    path = tmp_path / "sealgate.toml"
    path.write_text('[storage]\nbackend = "postgresql"\nurl = "postgresql://sg@db/sg"\n'
                    'blobs = "s3"\n\n[storage.s3]\nendpoint = "https://s3.example.org"\n'
                    'bucket = "sealgate"\nregion = "eu-central-1"\naccess_key_id = "AKIA1"\n'
                    'secret_access_key_file = "s3.secret"\n')
    config = load_config(path)
    assert config.storage.s3.bucket == "sealgate"
    assert config.storage.s3.secret_access_key_file == str(tmp_path / "s3.secret")


def test_an_unknown_s3_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "sealgate.toml"
    path.write_text('[storage.s3]\nsecret_access_key = "inline"\n')
    with pytest.raises(ConfigError, match=r"\[storage.s3\] unknown key 'secret_access_key'"):
        load_config(path)


def test_s3_blobs_need_the_s3_section(tmp_path: Path) -> None:
    path = tmp_path / "sealgate.toml"
    path.write_text('[storage]\nbackend = "postgresql"\nurl = "postgresql://sg@db/sg"\n'
                    'blobs = "s3"\n')
    with pytest.raises(ConfigError, match="storage.s3.endpoint: must be set"):
        load_config(path)


def test_s3_blobs_are_not_for_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "sealgate.toml"
    path.write_text('[storage]\nblobs = "s3"\n')
    with pytest.raises(ConfigError, match="not available with storage.backend = 'sqlite'"):
        load_config(path)
