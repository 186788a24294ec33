"""A real S3-compatible server for the tests: moto's server (PyPI `moto[server]`, in the
`[test]` extra) run as its own process on 127.0.0.1 and a free port, speaking the S3 HTTP
API (SigV4-signed requests, multipart uploads, ranged GETs) to the gateway's botocore
client. It runs out of process, so tracemalloc in the tests measures the gateway alone.

Nothing here skips: when the server cannot start, the fixture fails with its output.
Each test that wants a bucket gets a new one (s3_settings), so no test sees another's
objects.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.storage.s3 import S3Blobs, S3Settings
from tests.fakes.ports import free_port

START_TIMEOUT = 30.0
ACCESS_KEY_ID = "sealgate-test"
SECRET = "sealgate-test-secret-0123456789"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path
    _buckets: Iterator[int] = itertools.count()

    def new_bucket(self) -> S3Settings:
        """A fresh, empty bucket, made through the S3 API itself."""
        settings = S3Settings(self.endpoint, f"sealgate-test-{next(self._buckets)}", REGION,
                              ACCESS_KEY_ID, SECRET)
        store = S3Blobs(settings)
        store._s3.create_bucket(Bucket=settings.bucket)
        store.close()
        return settings


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}:\n"
                               f"{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"moto_server did not listen on 127.0.0.1:{port} within"
                       f" {START_TIMEOUT:.0f}s:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="sealgate-s3-"))
    log = workdir / "moto.log"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
           "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": REGION}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    try:
        _wait_for_port(port, process, log)
        yield S3Server(f"http://127.0.0.1:{port}", process, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def s3_settings(s3_server: S3Server) -> S3Settings:
    return s3_server.new_bucket()
