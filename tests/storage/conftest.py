"""The `storage` fixture of the contract suite: every test_contract_*.py module runs once per
back-end. A back-end is done when it passes them all.

On PostgreSQL each test gets tables of its own (a fresh schema on the session's private
cluster, tests/postgres.py, migrated as the back-end opens) and its own keys directory;
"postgresql+s3" is PostgreSQL with storage.blobs = "s3": the encrypted pickups in a bucket
of the test's own on the session's S3 server (tests/s3_server.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.config import Config, S3Config, check_s3
from gateway.storage import open_storage
from gateway.storage.protocols import Storage
from gateway.storage.s3 import S3Settings
from tests.s3_server import s3_server, s3_settings  # noqa: F401 - fixtures of this suite
from tests.storage.helpers import FakeClock

BACKENDS = ["sqlite", "postgresql", "postgresql+s3"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage_config(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    """The config both `storage` and `reopen` open: one data directory, and on PostgreSQL
    one database."""
    config = Config()
    config.storage.backend, _, blobs = backend.partition("+")
    config.storage.dir = str(tmp_path / "var")
    if config.storage.backend == "postgresql":
        config.storage.url = request.getfixturevalue("postgres_url")
        config.storage.blobs = blobs or "database"
    if blobs == "s3":
        bucket: S3Settings = request.getfixturevalue("s3_settings")
        secret = tmp_path / "s3-secret"
        secret.write_text(bucket.secret_access_key + "\n")
        config.storage.s3 = S3Config(bucket.endpoint, bucket.bucket, bucket.region,
                                     bucket.access_key_id, str(secret))
        check_s3(config.storage.s3)  # (the whole config would refuse the test URL's password)
    return config


def _open(config: Config, clock: FakeClock, owner: str | None = None) -> Storage:
    return open_storage(config, clock, owner)


@pytest.fixture
def storage(storage_config: Config, clock: FakeClock) -> Iterator[Storage]:
    opened = _open(storage_config, clock)
    yield opened
    opened.close()


@pytest.fixture
def reopen(storage_config: Config, clock: FakeClock,
           storage: Storage) -> Iterator[Callable[..., Storage]]:
    """Opens the same storage again, as the next process would: with OWNER, or with an
    owner of its own (two runners)."""
    opened: list[Storage] = []

    def again(owner: str | None = None) -> Storage:
        opened.append(_open(storage_config, clock, owner))
        return opened[-1]

    yield again
    for other in opened:
        other.close()
