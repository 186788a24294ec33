"""The epoch chain: what makes a destroyed epoch KEK unrecoverable on PostgreSQL, even from a
dump of the database taken before it was destroyed.

The epoch KEKs live in the database (every node must find the one another node made), so
a dump holds them, wrapped. Wrapped by the master key alone, a dump taken before purge
would stay readable for as long as master.key exists. So each epoch KEK is wrapped by a key
that only the nodes' keys directories can make, and that they stop being able to make once
its epoch has been destroyed: a hash chain, one link per UTC day,

    K[d+1] = HMAC-SHA256(K[d], "sealgate epoch chain step")
    wrapping key of epoch E = HMAC-SHA256(K[E], "sealgate epoch wrap|" + master key)

Each node keeps one link, K[d], in keys_dir/epoch-chain-<YYYYMMDD>.key: from it every later
epoch's wrapping key follows, but no earlier one (HMAC does not run backwards). Purge moves
the link forward past epochs whose KEK is gone (shredding the old file), so afterwards
neither the database, nor an old dump of it, nor this directory rebuilds those KEKs.

Every node derives the same keys from the same chain, without talking to the others; the
database only records the furthest link any node has reached (key_ring.chain_day and a
fingerprint of that link), so a node can check it has this cluster's chain and catch up.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import date, datetime, timedelta
from pathlib import Path

from gateway.storage.durable import write_durably
from gateway.vault.crypto import DecryptionError, shred_file

PREFIX = "epoch-chain-"
LINK_SIZE = 32


class ChainFileError(OSError):
    """This node's epoch chain file is missing or is not one."""


def _step(link: bytes) -> bytes:
    return hmac.new(link, b"sealgate epoch chain step", hashlib.sha256).digest()


def _file(directory: Path, day: date) -> Path:
    return directory / f"{PREFIX}{day:%Y%m%d}.key"


def _day_of(path: Path) -> date | None:
    try:
        return datetime.strptime(path.stem.removeprefix(PREFIX), "%Y%m%d").date()
    except ValueError:
        return None


class EpochChain:
    """The link of the chain in DIRECTORY, read from disk at each use: once any process of
    this node moved it forward, no process here holds the old link any more."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def exists(self) -> bool:
        return self._newest() is not None

    def create(self, day: date) -> None:
        write_durably(_file(self.directory, day), [secrets.token_bytes(LINK_SIZE)])

    def day(self) -> date:
        return self._link()[0]

    def link_at(self, epoch: date) -> bytes:
        """K[EPOCH]; DecryptionError when the chain has moved past it."""
        day, link = self._link()
        if epoch < day:
            raise DecryptionError(f"the epoch chain has moved past {epoch.isoformat()}: that"
                                  " epoch's key-encryption key was destroyed")
        for _ in range((epoch - day).days):
            link = _step(link)
        return link

    def wrapping_key(self, epoch: date, master: bytes) -> bytes:
        return hmac.new(self.link_at(epoch), b"sealgate epoch wrap|" + master,
                        hashlib.sha256).digest()

    def advance(self, day: date) -> None:
        """Move the link forward to DAY (never back): the new link written durably first,
        then every older one overwritten and unlinked."""
        if day > self.day():
            write_durably(_file(self.directory, day), [self.link_at(day)])
        self._shred_older_than(self.day())

    def _shred_older_than(self, day: date) -> None:
        for path, found in self._files():
            if found < day:
                shred_file(path)

    def _files(self) -> list[tuple[Path, date]]:
        found = [(p, _day_of(p)) for p in self.directory.glob(f"{PREFIX}*.key")]
        return sorted((p, d) for p, d in found if d is not None)

    def _newest(self) -> tuple[Path, date] | None:
        files = self._files()
        return max(files, key=lambda f: f[1]) if files else None

    def _link(self) -> tuple[date, bytes]:
        newest = self._newest()
        if newest is None:
            raise ChainFileError(f"{self.directory} holds no {PREFIX}*.key file: copy the keys"
                                 " directory from a node of this cluster")
        path, day = newest
        link = path.read_bytes()
        if len(link) != LINK_SIZE:
            raise ChainFileError(f"{path} is not an epoch chain link ({LINK_SIZE} bytes)")
        return day, link


def fingerprint(link: bytes) -> str:
    """Names a link without revealing it (the database keeps the furthest one's)."""
    return hmac.new(link, b"sealgate epoch chain id", hashlib.sha256).hexdigest()[:16]


def day_before(day: date) -> date:
    return day - timedelta(days=1)
