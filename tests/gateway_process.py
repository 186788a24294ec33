"""A real `sealgate serve` process for end-to-end tests, with its own config and data dir."""

from __future__ import annotations

import email.policy
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from tests.fakes.ports import free_port

REPO = Path(__file__).resolve().parent.parent


@dataclass
class GatewaySettings:
    nameserver: str
    mx_port: int
    ca_file: Path
    policy_dir: Path
    relay: str = "127.0.0.1:1"
    extra: dict[str, dict[str, object]] = field(default_factory=dict)
    # storage.backend = "postgresql" when set: makes the storage.url of a new database (a
    # schema of the tests' cluster) for each gateway, which is the gateway's own.
    new_database: Callable[[], str] | None = None

    @property
    def storage_backend(self) -> str:
        return "sqlite" if self.new_database is None else "postgresql"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(directory: Path, settings: GatewaySettings, smtp_port: int,
                 portal_port: int, database_url: str = "", host: str = "127.0.0.1") -> Path:
    sections: dict[str, dict[str, object]] = {
        "smtp": {"listen": f"{host}:{smtp_port}", "hostname": "gateway.sealgate.test"},
        "delivery": {"port": settings.mx_port, "ca_file": str(settings.ca_file),
                     "retry_initial": "1s", "retry_max": "2s", "poll_interval": "0.2s",
                     "connect_timeout": "5s"},
        "dns": {"nameservers": [settings.nameserver], "timeout": "3s"},
        "storage": {"dir": str(directory / "var")},
        "policy": {"dir": str(settings.policy_dir)},
        "pickup": {"listen": f"{host}:{portal_port}",
                   "base_url": f"http://{host}:{portal_port}", "organization": "Example Clinic"},
        "notify": {"from": "secure-mail@clinic.test"},
        "internal": {"relay": settings.relay},
    }
    if database_url:
        sections["storage"].update(backend="postgresql", url=database_url, blobs="database")
    for name, values in settings.extra.items():
        sections[name] = {**sections.get(name, {}), **values}
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items()) + "\n"
        for name, values in sections.items()
    )
    path = directory / "sealgate.toml"
    path.write_text(text)
    return path


class GatewayProcess:
    """A gateway with a data directory of its own and, on PostgreSQL, a database of its own
    (settings.new_database) unless DATABASE_URL names one another node uses too. HOST is
    the loopback address it listens on."""

    def __init__(self, directory: Path, settings: GatewaySettings, database_url: str = "",
                 host: str = "127.0.0.1") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.host = host
        self.smtp_port = free_port(host)
        self.portal_port = free_port(host)
        if not database_url and settings.new_database is not None:
            database_url = settings.new_database()
        self.database_url = database_url
        self.config = write_config(directory, settings, self.smtp_port, self.portal_port,
                                   database_url, host)
        self.log_path = directory / "gateway.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def portal_url(self) -> str:
        return f"http://{self.host}:{self.portal_port}"

    @property
    def storage_backend(self) -> str:
        return "postgresql" if self.database_url else "sqlite"

    @property
    def storage_dir(self) -> Path:
        return self.directory / "var"

    def start(self, timeout: float = 40.0, own_group: bool = False) -> None:
        """Start `serve`; with OWN_GROUP in a process group of its own (kill_group)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=own_group,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not (_listening(self.host, self.smtp_port)
                   and _listening(self.host, self.portal_port)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"gateway did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill_hard(self) -> None:
        self.stop(signal.SIGKILL)

    def kill_group(self) -> None:
        """kill -9 of the whole process group (supervisor and every worker at once) of a
        gateway started with own_group."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "--config", str(self.config), *args],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )

    def send(self, message: EmailMessage, sender: str | None = None,
             recipients: list[str] | None = None) -> str:
        """Submit MESSAGE over SMTP; returns the 250 reply text to DATA."""
        with smtplib.SMTP(self.host, self.smtp_port, timeout=30) as client:
            client.ehlo("mail.clinic.test")
            client.mail(sender or str(message["From"]))
            for rcpt in recipients or [str(message["To"])]:
                code, reply = client.rcpt(rcpt)
                assert code == 250, (code, reply)
            code, reply = client.data(message.as_bytes(policy=email.policy.SMTP))
            assert code == 250, (code, reply)
            return reply.decode()


    def sealed_copy(self, pickup_id: str) -> bytes | None:
        """The stored (encrypted) copy of a pickup as it lies in the store: the blob file on
        SQLite, its chunks in the database on PostgreSQL; None when there is none."""
        if not self.database_url:
            blob = self.storage_dir / "blobs" / f"{pickup_id}.sgb"
            return blob.read_bytes() if blob.exists() else None
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute("SELECT data FROM blob_chunks WHERE blob = %s ORDER BY seq",
                                (f"pickup:{pickup_id}",)).fetchall()
        return b"".join(bytes(r[0]) for r in rows) if rows else None


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0
