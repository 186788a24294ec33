"""A real S3-compatible server for the tests: moto's server (PyPI `moto[server]`, in the
`[test]` extra) run as its own process on 127.0.0.1 and a free port, speaking the S3 HTTP
API (SigV4-signed requests, multipart uploads, ranged GETs) to the gateway's botocore
client. It runs out of process, so tracemalloc in the tests measures the gateway alone.

Signatures are checked: moto authenticates every request after its first
NO_AUTH_ACTIONS, which the fixture spends on making an IAM user with an access key and a
policy allowing S3; from then on a request signed with anything but that key's secret is
refused (SignatureDoesNotMatch), as by MinIO or AWS.

Nothing here skips: when the server cannot start, the fixture fails with its output.
Each test that wants a bucket gets a new one (s3_settings), so no test sees another's
objects.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import botocore.session
import pytest

from gateway.storage.s3 import S3Blobs, S3Settings
from tests.fakes.ports import free_port

START_TIMEOUT = 30.0
REGION = "us-east-1"
NO_AUTH_ACTIONS = 3  # create_user, create_access_key, put_user_policy
S3_ANYTHING = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path
    access_key_id: str = ""
    secret_access_key: str = ""
    _buckets: Iterator[int] = itertools.count()

    def make_user(self) -> None:
        """The IAM user whose key every later request is signed with (the last requests
        moto takes unauthenticated)."""
        iam = botocore.session.get_session().create_client(
            "iam", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        try:
            iam.create_user(UserName="sealgate")
            key = iam.create_access_key(UserName="sealgate")["AccessKey"]
            iam.put_user_policy(UserName="sealgate", PolicyName="s3",
                                PolicyDocument=S3_ANYTHING)
        finally:
            iam.close()
        self.access_key_id, self.secret_access_key = key["AccessKeyId"], key["SecretAccessKey"]

    def new_bucket(self) -> S3Settings:
        """A fresh, empty bucket, made through the S3 API itself."""
        settings = S3Settings(self.endpoint, f"sealgate-test-{next(self._buckets)}", REGION,
                              self.access_key_id, self.secret_access_key)
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
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(NO_AUTH_ACTIONS),
           "AWS_DEFAULT_REGION": REGION}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    try:
        _wait_for_port(port, process, log)
        server = S3Server(f"http://127.0.0.1:{port}", process, log)
        server.make_user()
        yield server
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
