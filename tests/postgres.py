"""A private PostgreSQL cluster for the tests: initdb into a temporary directory, postgres on
127.0.0.1 with a free port and its unix socket in that directory, fsync on (durability is
what the back-end promises, so the tests measure it with it), stopped at session end.

PostgreSQL refuses to run as root, so under root (CI) the cluster belongs to `nobody` and
every server program runs through `runuser -u nobody`; as any other user it runs directly.
Nothing here skips: when PostgreSQL is missing or cannot start, the fixture fails with the
server's own log, and scripts/test installs Debian's `postgresql` beforehand.

Tests get a schema each (postgres_url): their tables, migrated by the back-end itself as it
opens, are their own, and dropping them afterwards is cheap.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from gateway.storage.postgres.storage import PostgresStorage
from gateway.storage.protocols import Clock
from tests.fakes.ports import free_port

SERVER_USER = "nobody"  # exists on every Debian system; owns nothing else we could harm
SUPERUSER = "sealgate"
START_TIMEOUT = 60


class ClusterError(RuntimeError):
    """PostgreSQL could not be found or started; the message says why and how to fix it."""


def find_bindir() -> Path:
    """The directory with initdb and pg_ctl: on PATH, else Debian's newest
    /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: _version_key(p.parent.parent.name))
    if not versions:
        raise ClusterError("PostgreSQL server programs (initdb, pg_ctl) not found: run"
                           " scripts/test, which installs Debian's postgresql, or"
                           " apt-get install postgresql")
    return versions[-1].parent


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


@dataclass
class Cluster:
    bindir: Path
    root: Path  # owned by the server user: data/, the socket, the log
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    database: str = "postgres"  # where the tests' schemas are made
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres", schema: str = "") -> str:
        """A URL for DATABASE; with SCHEMA, one whose tables are made and found there."""
        url = f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"
        return url + (f"?options=-csearch_path%3D{schema}" if schema else "")

    def config_url(self, passfile: Path, database: str = "postgres", schema: str = "") -> str:
        """url() as a config file has it: no password in it, the password in PASSFILE
        (written here, 0600, as ~/.pgpass would be)."""
        passfile.parent.mkdir(parents=True, exist_ok=True)
        passfile.write_text(f"127.0.0.1:*:*:{SUPERUSER}:{self.password}\n")
        passfile.chmod(0o600)
        url = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}?passfile={passfile}"
        return url + (f"&options=-csearch_path%3D{schema}" if schema else "")

    # -- life cycle -------------------------------------------------------------------------

    def init(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        _give_to_server_user(pwfile)
        self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--pwfile", str(pwfile),
                  "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C",
                  "--no-instructions")
        pwfile.unlink()

    def start(self, port: int = 0) -> None:
        """Start on PORT, or a free port (one taken between choosing and binding is retried)."""
        for _ in range(1 if port else 3):
            self.port = port or free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
                       " -c fsync=on -c synchronous_commit=on -c max_connections=200")
            try:
                self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                          "-t", str(START_TIMEOUT), "-o", options, "start")
                return
            except ClusterError:
                if "Address already in use" not in self._log_tail():
                    raise
        raise ClusterError(f"PostgreSQL found no free port:\n{self._log_tail()}")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    # -- databases --------------------------------------------------------------------------

    def create_database(self) -> str:
        """A new, empty database; returns its name."""
        name = f"tests_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def create_schema(self) -> str:
        """A new, empty schema in the tests' database; returns its name."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(self.database), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return name

    def drop_schema(self, name: str) -> None:
        with psycopg.connect(self.url(self.database), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
                         .format(sql.Identifier(name)))

    # -- helpers ----------------------------------------------------------------------------

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root,
                              timeout=START_TIMEOUT + 30, check=False)
        if done.returncode != 0:
            raise ClusterError(f"{program} failed ({done.returncode}): {done.stderr.strip()}"
                               f"\n{done.stdout.strip()}\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return "server log:\n" + "\n".join(self.log_file.read_text().splitlines()[-20:])
        except OSError:
            return "(no server log)"


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, SERVER_USER)


def _private_root() -> Path:
    """A 0700 directory for the cluster, owned by the server user. It sits directly under
    the system temporary directory because pytest's own (0700, root's) is closed to it."""
    root = Path(tempfile.mkdtemp(prefix="sealgate-pg-"))
    _give_to_server_user(root)
    return root


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    cluster = Cluster(find_bindir(), _private_root())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(cluster.root, ignore_errors=True)


# -- fixtures (registered by tests/conftest.py as a plugin) ------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """The session's private cluster, started by the first test that needs it, with the
    database the tests' schemas live in."""
    with running_cluster() as cluster:
        cluster.database = cluster.create_database()
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> Iterator[str]:
    """A URL whose tables are this test's own: an empty schema first on its search_path,
    dropped afterwards. (A schema costs a few milliseconds; a database cloned from a
    migrated template costs 0.4 s with fsync on, more than migrating the schema.)"""
    name = postgres_cluster.create_schema()
    yield postgres_cluster.url(postgres_cluster.database, schema=name)
    postgres_cluster.drop_schema(name)


@pytest.fixture
def open_pg(postgres_url: str, tmp_path: Path) -> Iterator[Callable[..., PostgresStorage]]:
    """Opens the PostgreSQL back-end on this test's schema (URL and keys directory may be
    given, as another node would have them); closes what it opened."""
    opened: list[PostgresStorage] = []

    def open_one(url: str = postgres_url, keys_dir: Path = tmp_path / "keys",
                 clock: Clock = time.time) -> PostgresStorage:
        opened.append(PostgresStorage(url, keys_dir, clock))
        return opened[-1]

    yield open_one
    for storage in opened:
        storage.close()
