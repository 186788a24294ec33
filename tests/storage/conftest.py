"""The `storage` fixture of the contract suite: every test_contract_*.py module runs once per
back-end. A back-end is done when it passes them all.

On PostgreSQL each test gets tables of its own (a fresh schema on the session's private
cluster, tests/postgres.py, migrated as the back-end opens) and its own keys directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.storage import open_storage
from gateway.storage.postgres import open_postgres
from gateway.storage.protocols import Storage
from tests.storage.helpers import FakeClock

BACKENDS = ["sqlite", "postgresql"]


# What the PostgreSQL back-end already does of the queue (the content and history the
# other concerns' tests need); every other queue contract test must still fail on it.
_POSTGRES_QUEUE_DONE = {"test_content_enqueued_in_chunks_is_their_concatenation",
                        "test_a_streamed_spool_keeps_its_content_under_a_new_id",
                        "test_queued_messages_survive_reopening",
                        "test_messages_to_a_recipient_are_listed_oldest_first"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Until PostgreSQL has its queue part, its queue contract tests must fail (strict):
    delete this hook when the part lands."""
    for item in items:
        backend = getattr(item, "callspec", None) and item.callspec.params.get("backend")
        if item.path.stem == "test_contract_queue" and backend == "postgresql" \
                and item.name.partition("[")[0] not in _POSTGRES_QUEUE_DONE:
            item.add_marker(pytest.mark.xfail(strict=True, reason="PostgreSQL queue pending"))


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
    config.storage.backend = backend
    config.storage.dir = str(tmp_path / "var")
    if backend == "postgresql":
        config.storage.url = request.getfixturevalue("postgres_url")
        config.storage.blobs = "database"
    return config


def _open(config: Config, clock: FakeClock, owner: str | None = None) -> Storage:
    if config.storage.backend == "postgresql":
        # Directly: open_storage refuses PostgreSQL until its queue part (and with it the
        # queue's owners) exists.
        return open_postgres(config.storage, clock)  # type: ignore[return-value]
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
