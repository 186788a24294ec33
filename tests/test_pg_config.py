"""Config for the PostgreSQL back-end: storage.url, storage.blobs and storage.keys_dir are
checked with a message that says what to fix; a complete PostgreSQL config loads."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import psycopg
import pytest

from gateway.config import ConfigError, load_config
from gateway.storage import is_storage_full, storage_errors

GOOD_URL = "postgresql://sealgate@db.example.org:5432/sealgate"


def config_with(tmp_path: Path, storage: str) -> Path:
    path = tmp_path / "sealgate.toml"
    path.write_text(f"[storage]\ndir = \"var\"\n{storage}\n")
    return path


@pytest.mark.parametrize(("storage", "message"), [
    ('blobs = "nfs"', "storage.blobs: 'nfs' is not one of local, database, s3"),
    ('blobs = "database"', "storage.blobs: 'database' is not available with"
                           " storage.backend = 'sqlite'"),
    ('keys_dir = "/elsewhere"', "storage.keys_dir: the sqlite back-end keeps its keys in"),
    ('backend = "postgresql"\nblobs = "database"', "storage.url: must be set"),
    (f'backend = "postgresql"\nurl = "{GOOD_URL}"', "storage.blobs: 'local' is not available"
                                                    " with storage.backend = 'postgresql'"),
    ('backend = "postgresql"\nblobs = "database"\nurl = "mysql://db/sealgate"',
     "storage.url: 'mysql://db/sealgate' is not a postgresql:// URL"),
    ('backend = "postgresql"\nblobs = "database"\nurl = "postgresql://db/x?bogus=1"',
     "storage.url: cannot be parsed: invalid URI query parameter"),
    ('backend = "postgresql"\nblobs = "database"\nurl = "postgresql://db:99999/x"',
     "storage.url: port '99999' is not a number from 1 to 65535"),
    ('backend = "postgresql"\nblobs = "database"\nurl = "postgresql://u:secret@db/x"',
     "storage.url: holds a password; put it in PGPASSWORD or ~/.pgpass"),
])
def test_bad_storage_keys_are_named_with_what_to_fix(tmp_path: Path, storage: str,
                                                     message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        load_config(config_with(tmp_path, storage))


def test_a_complete_postgresql_config_loads(tmp_path: Path) -> None:
    path = config_with(tmp_path, f'backend = "postgresql"\nblobs = "database"\nurl = "{GOOD_URL}"')
    config = load_config(path)
    assert (config.storage.backend, config.storage.url) == ("postgresql", GOOD_URL)


def test_keys_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load_config(config_with(tmp_path, 'keys_dir = "var/keys"'))
    assert config.storage.keys_path == tmp_path / "var" / "keys"


def test_psycopg_errors_are_storage_errors_and_disk_full_is_recognised() -> None:
    assert issubclass(psycopg.OperationalError, storage_errors())
    assert sqlite3.Error in storage_errors()
    assert is_storage_full(psycopg.errors.DiskFull("could not extend file"))
    assert not is_storage_full(psycopg.OperationalError("connection refused"))
