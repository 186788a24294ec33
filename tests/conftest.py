"""Shared fixtures: a loopback DNS server, fake MX hosts on 127.0.0.x sharing one port,
and a running gateway configured to use them.

Test domains are named for their scenario:
  tls.test       MX mx.tls.test      127.0.0.2  STARTTLS, certificate valid for its name
  plain.test     MX mx.plain.test    127.0.0.3  no STARTTLS
  bad-cert.test  MX mx.bad-cert.test 127.0.0.4  STARTTLS, certificate for another name
  verified.test  MX mx.tls.test      (policy: require-verified-tls, should deliver)
  patients.test  MX mx.tls.test      (policy: pickup always)
"""

from __future__ import annotations

import contextlib
import dataclasses
import smtplib
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme

from gateway.config import Config
from tests.fakes.certs import leaf, make_ca, write_ca_pem
from tests.fakes.dns_server import FakeDNS
from tests.fakes.holding_mx import HoldingMX
from tests.fakes.https_server import FakeHTTPS
from tests.fakes.mx_host import FakeMX, ReceivedMessage
from tests.fakes.ports import free_port
from tests.gateway_process import GatewayProcess, GatewaySettings

# The private PostgreSQL cluster's fixtures (postgres_cluster, postgres_url, ...).
pytest_plugins = ["tests.postgres"]

MAX_MESSAGE_SIZE = 2_000_000
POLICY_HTTPS_IP = "127.0.0.12"
MX_IPS = {"tls": "127.0.0.2", "plain": "127.0.0.3", "bad-cert": "127.0.0.4", "relay": "127.0.0.5"}

TEST_POLICY = """\
[confidential]
subject_tags = ["[secure]", "[confidential]"]
strip_tags = true
headers = { "Sensitivity" = ["Company-Confidential", "Private"] }

[default]
mode = "require-tls"

[[domain]]
match = "bad-cert.test"
mode = "require-verified-tls"

[[domain]]
match = "verified.test"
mode = "require-verified-tls"

[[domain]]
match = "patients.test"
mode = "pickup"

[[domain]]
match = "*.verified.test"
mode = "require-verified-tls"
"""


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return make_ca()


@pytest.fixture(scope="session")
def fake_dns() -> Iterator[FakeDNS]:
    with FakeDNS() as server:
        for scenario, ip in MX_IPS.items():
            server.add(f"{scenario}.test", "MX", f"10 mx.{scenario}.test.")
            server.add(f"mx.{scenario}.test", "A", ip)
        server.add("verified.test", "MX", "10 mx.tls.test.")
        server.add("patients.test", "MX", "10 mx.tls.test.")
        yield server


@pytest.fixture(scope="session")
def mx_port() -> int:
    return free_port(*MX_IPS.values())


@pytest.fixture(scope="session")
def mx_hosts(ca: trustme.CA, mx_port: int) -> Iterator[dict[str, FakeMX]]:
    other_ca = make_ca()
    hosts = {
        "tls": FakeMX(MX_IPS["tls"], mx_port, name="mx.tls.test", tls_cert=leaf(ca, "mx.tls.test")),
        "plain": FakeMX(MX_IPS["plain"], mx_port, name="mx.plain.test"),
        "bad-cert": FakeMX(MX_IPS["bad-cert"], mx_port, name="mx.bad-cert.test",
                           tls_cert=leaf(other_ca, "somewhere-else.invalid")),
        "relay": FakeMX(MX_IPS["relay"], mx_port, name="relay.clinic.test"),
    }
    for host in hosts.values():
        host.start()
    yield hosts
    for host in hosts.values():
        host.stop()


@pytest.fixture(scope="session")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("policies")
    (directory / "policy.toml").write_text(TEST_POLICY)
    return directory


@pytest.fixture(scope="session")
def policy_https(ca: trustme.CA) -> Iterator[FakeHTTPS]:
    """The HTTPS host of every mta-sts.<domain> in the tests (point its A record here)."""
    with FakeHTTPS(POLICY_HTTPS_IP, free_port(POLICY_HTTPS_IP), ca) as server:
        yield server


# The end-to-end modules that run on both storage back-ends (accepting, delivery over TLS,
# pickup, the portal journey, expiry, retries, DSNs, TLS reports); every other one runs on
# SQLite only.
BOTH_BACKENDS = frozenset({"test_routing_e2e", "test_pickup_journey", "test_retries",
                           "test_bounces", "test_durability_and_expiry",
                           "test_sender_unnotified", "test_dsn_e2e", "test_keys_cli",
                           "test_downgrade_e2e", "test_mta_sts_cache_e2e", "test_tlsrpt_serve",
                           "test_requiretls"})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests of BOTH_BACKENDS modules whose gateways come from gateway_settings run twice,
    [sqlite] and [postgresql]. SQLite's parameter is None, the cache key of a fixture not
    parametrized at all: the session's SQLite gateways are the same for every module."""
    if "storage_backend" in metafunc.fixturenames \
            and metafunc.module.__name__.rpartition(".")[2] in BOTH_BACKENDS:
        metafunc.parametrize("storage_backend", [None, "postgresql"], indirect=True,
                             scope="session", ids=["sqlite", "postgresql"])


@pytest.fixture(scope="session")
def storage_backend(request: pytest.FixtureRequest) -> str:
    """The back-end of the gateways from gateway_settings: "sqlite" unless parametrized."""
    return str(getattr(request, "param", None) or "sqlite")


@pytest.fixture(scope="session")
def gateway_settings(fake_dns: FakeDNS, mx_port: int, ca: trustme.CA, policy_dir: Path,
                     policy_https: FakeHTTPS, storage_backend: str,
                     tmp_path_factory: pytest.TempPathFactory,
                     request: pytest.FixtureRequest) -> GatewaySettings:
    ca_file = write_ca_pem(ca, tmp_path_factory.mktemp("ca") / "ca.pem")
    new_database = None
    if storage_backend == "postgresql":
        cluster = request.getfixturevalue("postgres_cluster")  # tests.postgres.Cluster
        passfile = tmp_path_factory.mktemp("pg") / "pgpass"

        def new_database() -> str:  # a schema of the session's cluster per gateway
            return cluster.config_url(passfile, cluster.database, cluster.create_schema())
    return GatewaySettings(
        nameserver=fake_dns.nameserver, mx_port=mx_port, ca_file=ca_file, policy_dir=policy_dir,
        relay=f"{MX_IPS['relay']}:{mx_port}",
        # 127.0.0.1 may relay; tests connect from 127.0.0.9 to play an outsider.
        extra={"smtp": {"allowed_networks": ["127.0.0.1/32", "::1/128"],
                        "max_message_size": MAX_MESSAGE_SIZE, "processes": 2},
               # Several workers of each kind whatever the machine's CPU count, so every
               # end-to-end test runs on the supervisor with worker processes.
               "delivery": {"mta_sts_port": policy_https.port, "processes": 2}},
        new_database=new_database,
    )


@pytest.fixture(scope="session")
def gateway(gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("gateway"), gateway_settings)
    process.start()
    yield process
    process.stop()


HOLDING_MX_IP = "127.0.0.14"


@pytest.fixture
def holding_mx(fake_dns: FakeDNS, mx_port: int) -> Iterator[HoldingMX]:
    """MX of held.test: takes each message at DATA, then holds the reply until released."""
    fake_dns.add("held.test", "MX", "10 mx.held.test.")
    fake_dns.add("mx.held.test", "A", HOLDING_MX_IP)
    with HoldingMX(HOLDING_MX_IP, mx_port, "mx.held.test") as host:
        yield host


@pytest.fixture
def own_gateway(gateway_settings: GatewaySettings, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway of the test's own (not started): for tests that stop, kill or restart it."""
    process = GatewayProcess(tmp_path / "gw", gateway_settings)
    yield process
    process.stop()


@pytest.fixture
def runner_config(gateway_settings: GatewaySettings, tmp_path: Path) -> Config:
    """A Config for an in-process queue runner: its store under TMP_PATH, delivering through
    the fake DNS to the fake MX hosts, trusting the test CA."""
    config = Config()
    config.storage.dir = str(tmp_path / "var")
    config.dns.nameservers = [gateway_settings.nameserver]
    config.delivery.port = gateway_settings.mx_port
    config.delivery.ca_file = str(gateway_settings.ca_file)
    return config


@pytest.fixture
def unique() -> str:
    """A fresh local part, so tests sharing the session's MX hosts never see each other's mail."""
    return "u" + uuid.uuid4().hex[:12]


def make_message(sender: str, recipient: str, subject: str, body: str = "Hello there.",
                 attachment: tuple[str, bytes] | None = None, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(attachment[1], maintype="application", subtype="pdf",
                               filename=attachment[0])
    return message


def wait_for_mail(mx: FakeMX, rcpt: str, timeout: float = 30.0) -> ReceivedMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in mx.messages:
            if rcpt in message.rcpt_tos:
                return message
        time.sleep(0.05)
    raise AssertionError(f"no message for {rcpt} at {mx.name} within {timeout}s")


def assert_no_mail(mx: FakeMX, rcpt: str) -> None:
    assert not [m for m in mx.messages if rcpt in m.rcpt_tos], f"{mx.name} got mail for {rcpt}"


LIMITED_TOTAL = 6       # limited_gateway: open SMTP sessions in total
LIMITED_PER_CLIENT = 3  # limited_gateway: open SMTP sessions per client address
LIMITED_IDLE_TIMEOUT = 3  # limited_gateway: seconds of silence before 421 4.4.2


@pytest.fixture(scope="session")
def limited_gateway(gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway with small limits: a short idle timeout and low connection caps. 127.0.0.0/24
    may relay here, so tests can play several clients (any 127.0.0.x) against the caps."""
    smtp = {**gateway_settings.extra["smtp"], "allowed_networks": ["127.0.0.0/24"],
            "idle_timeout": f"{LIMITED_IDLE_TIMEOUT}s", "max_connections": LIMITED_TOTAL,
            "max_connections_per_client": LIMITED_PER_CLIENT}
    settings = dataclasses.replace(gateway_settings, extra={**gateway_settings.extra, "smtp": smtp})
    process = GatewayProcess(tmp_path_factory.mktemp("limited-gateway"), settings)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def starttls_gateway(gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX], ca: trustme.CA,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway offering inbound STARTTLS with a certificate for 127.0.0.1 from CA."""
    directory = tmp_path_factory.mktemp("starttls-gateway")
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file = directory / "gw.pem", directory / "gw.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    smtp = {**gateway_settings.extra["smtp"], "tls_cert": str(cert_file), "tls_key": str(key_file)}
    settings = dataclasses.replace(gateway_settings, extra={**gateway_settings.extra, "smtp": smtp})
    process = GatewayProcess(directory / "gw", settings)
    process.start()
    yield process
    process.stop()


@contextlib.contextmanager
def bad_input_case(gateway: GatewayProcess) -> Iterator[None]:
    """A bad input case passes only if, afterwards, the gateway still answers a new client
    and logged no traceback while the case ran."""
    start = gateway.log_path.stat().st_size if gateway.log_path.exists() else 0
    yield
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as client:
        assert client.ehlo("check.clinic.test")[0] == 250
        assert client.noop()[0] == 250
    with gateway.log_path.open("rb") as log:
        log.seek(start)
        written = log.read().decode(errors="replace")
    assert "Traceback" not in written, written[-3000:]
