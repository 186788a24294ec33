"""The `storage` fixture of the contract suite: every test_contract_*.py module runs once per
back-end. A back-end is done when it passes them all; the next issue adds "postgresql"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.storage import open_storage
from gateway.storage.protocols import Storage
from tests.storage.helpers import FakeClock

BACKENDS = ["sqlite"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _config(backend: str, directory: Path) -> Config:
    config = Config()
    config.storage.backend = backend
    config.storage.dir = str(directory)
    return config


@pytest.fixture
def storage(backend: str, tmp_path: Path, clock: FakeClock) -> Iterator[Storage]:
    opened = open_storage(_config(backend, tmp_path / "var"), clock)
    yield opened
    opened.close()


@pytest.fixture
def reopen(backend: str, tmp_path: Path, clock: FakeClock,
           storage: Storage) -> Iterator[Callable[..., Storage]]:
    """Opens the same storage again, as the next process would: with OWNER, or with an
    owner of its own (two runners)."""
    opened: list[Storage] = []

    def again(owner: str | None = None) -> Storage:
        opened.append(open_storage(_config(backend, tmp_path / "var"), clock, owner))
        return opened[-1]

    yield again
    for other in opened:
        other.close()
