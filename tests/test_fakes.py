"""Prove the end-to-end test doubles behave like the real things they stand in for.

If a fake silently diverged (wrong rcode, missing AD flag, TLS not really negotiated),
gateway tests built on it would pass for the wrong reasons; these tests pin the
fakes' observable behaviour over real sockets.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import dns.asyncresolver
import dns.flags
import dns.message
import dns.nameserver
import dns.query
import dns.rcode
import dns.resolver
import pytest
import trustme

from tests.fakes.certs import leaf, make_ca, write_ca_pem
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.fakes.ports import free_port

TLSA_HEX = "ab" * 32
MESSAGE = b"From: a@src.test\r\nTo: b@tls.test\r\nSubject: hi\r\n\r\nbody\r\n"


# --------------------------------------------------------------------- fixtures


@pytest.fixture
def fake_dns() -> Iterator[FakeDNS]:
    with FakeDNS() as server:
        yield server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return make_ca()


@pytest.fixture(scope="module")
def mx_port() -> int:
    return free_port("127.0.0.2", "127.0.0.3")


def _resolver(server: FakeDNS) -> dns.asyncresolver.Resolver:
    """A resolver that talks only to the fake, the way the gateway is configured."""
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(server.host, server.port)]
    resolver.lifetime = 2.0
    resolver.timeout = 2.0
    return resolver


def _resolve(server: FakeDNS, name: str, rdtype: str, *, tcp: bool = False) -> dns.resolver.Answer:
    async def go() -> dns.resolver.Answer:
        return await _resolver(server).resolve(name, rdtype, tcp=tcp)

    return asyncio.run(go())


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    """Verifying client context (CERT_REQUIRED + hostname check) trusting only `ca`."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    return ctx


class _NamedSMTP(smtplib.SMTP):
    """smtplib verifies STARTTLS against the host it dialled (here an IP); dial the
    IP but verify the MX name, as an MTA does after an MX lookup."""

    def __init__(self, ip: str, port: int, tls_name: str) -> None:
        super().__init__(ip, port, timeout=5)
        self._host = tls_name


# -------------------------------------------------------------------------- DNS


def test_dns_nameserver_string(fake_dns: FakeDNS) -> None:
    assert fake_dns.host == "127.0.0.1"
    assert fake_dns.port > 0
    assert fake_dns.nameserver == f"127.0.0.1:{fake_dns.port}"


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_dns_answers_mx_a_txt_tlsa(fake_dns: FakeDNS, tcp: bool) -> None:
    fake_dns.add("tls.test", "MX", "10 mx.tls.test.", "20 mx2.tls.test")
    fake_dns.add("mx.tls.test", "A", "127.0.0.2")
    fake_dns.add("_mta-sts.tls.test", "TXT", '"v=STSv1; id=1"')
    fake_dns.add("_25._tcp.mx.tls.test", "TLSA", f"3 1 1 {TLSA_HEX}")

    mx = _resolve(fake_dns, "tls.test", "MX", tcp=tcp)
    assert sorted((r.preference, r.exchange.to_text()) for r in mx) == [
        (10, "mx.tls.test."),
        (20, "mx2.tls.test."),  # relative rdata names are made absolute too
    ]
    assert mx.response.flags & dns.flags.AA
    assert [r.address for r in _resolve(fake_dns, "mx.tls.test", "A", tcp=tcp)] == ["127.0.0.2"]
    txt = _resolve(fake_dns, "_mta-sts.tls.test", "TXT", tcp=tcp)
    assert [b"".join(r.strings) for r in txt] == [b"v=STSv1; id=1"]
    tlsa = _resolve(fake_dns, "_25._tcp.mx.tls.test", "TLSA", tcp=tcp)
    assert [(r.usage, r.selector, r.mtype, r.cert.hex()) for r in tlsa] == [(3, 1, 1, TLSA_HEX)]
    assert ("tls.test", "MX") in fake_dns.queries


def test_dns_nxdomain_vs_nodata(fake_dns: FakeDNS) -> None:
    fake_dns.add("mx.tls.test", "A", "127.0.0.2")
    with pytest.raises(dns.resolver.NoAnswer):
        _resolve(fake_dns, "mx.tls.test", "AAAA")
    with pytest.raises(dns.resolver.NXDOMAIN):
        _resolve(fake_dns, "nothing.tls.test", "A")


def test_dns_rcodes_on_the_wire(fake_dns: FakeDNS) -> None:
    """Check raw rcodes/flags too, since the resolver maps them to exceptions."""
    fake_dns.add("mx.tls.test", "A", "127.0.0.2")

    def ask(name: str, rdtype: str) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        return dns.query.udp(query, fake_dns.host, port=fake_dns.port, timeout=2.0)

    nodata = ask("mx.tls.test", "AAAA")
    assert (nodata.rcode(), nodata.answer) == (dns.rcode.NOERROR, [])
    assert nodata.flags & dns.flags.AA
    assert ask("nothing.tls.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_dns_ad_flag(fake_dns: FakeDNS) -> None:
    fake_dns.add("_25._tcp.mx.tls.test", "TLSA", f"3 1 1 {TLSA_HEX}")
    plain = _resolve(fake_dns, "_25._tcp.mx.tls.test", "TLSA")
    assert not plain.response.flags & dns.flags.AD
    fake_dns.set_authenticated("_25._tcp.mx.tls.test", True)
    assert _resolve(fake_dns, "_25._tcp.mx.tls.test", "TLSA").response.flags & dns.flags.AD
    fake_dns.set_authenticated("_25._tcp.mx.tls.test", False)
    assert not _resolve(fake_dns, "_25._tcp.mx.tls.test", "TLSA").response.flags & dns.flags.AD


def test_dns_forced_rcode(fake_dns: FakeDNS) -> None:
    fake_dns.add("broken.test", "MX", "10 mx.broken.test.")
    fake_dns.set_rcode("broken.test", "SERVFAIL")
    with pytest.raises(dns.resolver.NoNameservers):
        _resolve(fake_dns, "broken.test", "MX")
    fake_dns.set_rcode("broken.test", "NXDOMAIN")
    with pytest.raises(dns.resolver.NXDOMAIN):
        _resolve(fake_dns, "broken.test", "MX")
    fake_dns.set_rcode("broken.test", "NOERROR")
    assert len(_resolve(fake_dns, "broken.test", "MX")) == 1


def test_dns_cname_chase(fake_dns: FakeDNS) -> None:
    fake_dns.add("alias.test", "CNAME", "mid.test.")
    fake_dns.add("mid.test", "CNAME", "mx.tls.test.")
    fake_dns.add("mx.tls.test", "A", "127.0.0.2")
    answer = _resolve(fake_dns, "alias.test", "A")
    assert answer.canonical_name.to_text() == "mx.tls.test."
    assert [r.address for r in answer] == ["127.0.0.2"]
    assert len(answer.response.answer) == 3
    # Asking for the CNAME itself returns it without chasing.
    assert [r.target.to_text() for r in _resolve(fake_dns, "alias.test", "CNAME")] == ["mid.test."]
    # A dangling CNAME ends in NXDOMAIN for the target (RFC 6604).
    fake_dns.add("dangling.test", "CNAME", "gone.test.")
    with pytest.raises(dns.resolver.NXDOMAIN):
        _resolve(fake_dns, "dangling.test", "A")


def test_dns_null_mx(fake_dns: FakeDNS) -> None:
    fake_dns.add("nomail.test", "MX", "0 .")
    (record,) = _resolve(fake_dns, "nomail.test", "MX")
    assert (record.preference, record.exchange.to_text()) == (0, ".")


def test_dns_truncated_udp_falls_back_to_tcp(fake_dns: FakeDNS) -> None:
    """Large answers set TC over UDP; dnspython must then get the full set over TCP."""
    values = [f'"{i:02d} {"x" * 60}"' for i in range(20)]
    fake_dns.add("big.test", "TXT", *values)
    assert len(_resolve(fake_dns, "big.test", "TXT")) == 20


def test_dns_clear_forgets_everything(fake_dns: FakeDNS) -> None:
    fake_dns.add("mx.tls.test", "A", "127.0.0.2")
    _resolve(fake_dns, "mx.tls.test", "A")
    fake_dns.clear()
    assert fake_dns.queries == []
    with pytest.raises(dns.resolver.NXDOMAIN):
        _resolve(fake_dns, "mx.tls.test", "A")


# ---------------------------------------------------------------------- certs


def test_write_ca_pem(ca: trustme.CA, tmp_path: Path) -> None:
    path = write_ca_pem(ca, tmp_path / "ca" / "ca.pem")
    assert path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    ctx = ssl.create_default_context(cafile=str(path))
    assert len(ctx.get_ca_certs()) == 1


# ------------------------------------------------------------------------- MX


def test_mx_plain_delivery(mx_port: int) -> None:
    with FakeMX("127.0.0.3", mx_port, name="mx3.plain.test") as mx:
        with smtplib.SMTP("127.0.0.3", mx_port, local_hostname="gw.test", timeout=5) as client:
            code, banner = client.ehlo()
            assert code == 250 and banner.startswith(b"mx3.plain.test")
            assert not client.has_extn("starttls")
            client.sendmail("a@src.test", ["b@plain.test"], MESSAGE)
        (msg,) = mx.wait_for(1, timeout=2)
    assert msg.mail_from == "a@src.test"
    assert msg.rcpt_tos == ["b@plain.test"]
    assert msg.content.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")
    assert msg.peer_ip.startswith("127.")
    assert (msg.tls, msg.tls_version, msg.cipher) == (False, None, None)
    assert msg.helo == "gw.test"


def test_mx_starttls_with_verified_cert(ca: trustme.CA, mx_port: int) -> None:
    cert = leaf(ca, "mx.tls.test")
    with FakeMX("127.0.0.2", mx_port, name="mx.tls.test", tls_cert=cert) as mx:
        with _NamedSMTP("127.0.0.2", mx_port, "mx.tls.test") as client:
            client.ehlo()
            assert client.has_extn("starttls")
            client.starttls(context=_client_context(ca))
            sock: Any = client.sock
            assert isinstance(sock, ssl.SSLSocket)
            client_version, client_cipher = sock.version(), sock.cipher()
            client.sendmail("a@src.test", ["b@tls.test"], MESSAGE)
        (msg,) = mx.wait_for(1, timeout=2)
    assert msg.tls is True
    assert msg.tls_version == client_version and msg.tls_version in {"TLSv1.2", "TLSv1.3"}
    assert client_cipher is not None and msg.cipher == client_cipher[0]
    assert msg.rcpt_tos == ["b@tls.test"]


def test_mx_starttls_with_aiosmtplib(ca: trustme.CA, mx_port: int) -> None:
    """The gateway's own SMTP client library interoperates with the fake."""
    cert = leaf(ca, "mx.tls.test")

    async def send() -> None:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.2", port=mx_port, start_tls=False, timeout=5,
            tls_context=_client_context(ca),
        )
        async with client:
            await client.starttls(server_hostname="mx.tls.test")
            await client.sendmail("a@src.test", ["b@tls.test"], MESSAGE)

    with FakeMX("127.0.0.2", mx_port, name="mx.tls.test", tls_cert=cert) as mx:
        asyncio.run(send())
        (msg,) = mx.wait_for(1, timeout=2)
    assert msg.tls and msg.tls_version is not None and msg.cipher is not None


def test_mx_cert_name_mismatch_is_rejected_by_client(ca: trustme.CA, mx_port: int) -> None:
    """The cert really is checked: a wrong expected name fails the handshake."""
    cert = leaf(ca, "mx.tls.test")
    with FakeMX("127.0.0.2", mx_port, name="mx.tls.test", tls_cert=cert) as mx:
        with _NamedSMTP("127.0.0.2", mx_port, "other.test") as client:
            with pytest.raises(ssl.SSLCertVerificationError):
                client.starttls(context=_client_context(ca))
            client.close()
    assert mx.messages == []


def test_mx_cert_without_offering_starttls(ca: trustme.CA, mx_port: int) -> None:
    cert = leaf(ca, "mx.tls.test")
    with FakeMX("127.0.0.2", mx_port, name="mx.tls.test", tls_cert=cert,
                offer_starttls=False) as mx:
        with smtplib.SMTP("127.0.0.2", mx_port, timeout=5) as client:
            client.ehlo()
            assert not client.has_extn("starttls")
        mx.offer_starttls = True  # applies from the next connection
        with smtplib.SMTP("127.0.0.2", mx_port, timeout=5) as client:
            client.ehlo()
            assert client.has_extn("starttls")


def test_two_hosts_same_port(mx_port: int) -> None:
    with (
        FakeMX("127.0.0.2", mx_port, name="mx2.test") as mx2,
        FakeMX("127.0.0.3", mx_port, name="mx3.test") as mx3,
    ):
        for ip in ("127.0.0.2", "127.0.0.3"):
            with smtplib.SMTP(ip, mx_port, timeout=5) as client:
                client.sendmail("a@src.test", [f"to@{ip}"], MESSAGE)
        assert [m.rcpt_tos for m in mx2.wait_for(1, timeout=2)] == [["to@127.0.0.2"]]
        assert [m.rcpt_tos for m in mx3.wait_for(1, timeout=2)] == [["to@127.0.0.3"]]


def test_mx_rcpt_reply_refuses(mx_port: int) -> None:
    with FakeMX("127.0.0.3", mx_port, name="mx3.test", rcpt_reply="550 5.1.1 no such user") as mx:
        with smtplib.SMTP("127.0.0.3", mx_port, timeout=5) as client:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
                client.sendmail("a@src.test", ["nobody@plain.test"], MESSAGE)
        assert info.value.recipients == {"nobody@plain.test": (550, b"5.1.1 no such user")}
    assert mx.messages == []


def test_mx_data_reply_then_accept(mx_port: int) -> None:
    with FakeMX("127.0.0.3", mx_port, name="mx3.test", data_reply="451 4.3.0 try later") as mx:
        with smtplib.SMTP("127.0.0.3", mx_port, timeout=5) as client:
            with pytest.raises(smtplib.SMTPDataError) as info:
                client.sendmail("a@src.test", ["b@plain.test"], MESSAGE)
            assert info.value.smtp_code == 451
            mx.data_reply = None
            client.sendmail("a@src.test", ["b@plain.test"], MESSAGE)
        assert len(mx.wait_for(1, timeout=2)) == 1
        mx.clear()
        assert mx.messages == []


def test_mx_wait_for_timeout_message(mx_port: int) -> None:
    with FakeMX("127.0.0.3", mx_port, name="mx3.test") as mx:
        with pytest.raises(AssertionError, match=r"mx3\.test .*expected at least 1 .*got 0"):
            mx.wait_for(1, timeout=0.05)


def test_mx_stop_with_client_still_connected(mx_port: int) -> None:
    """stop() must not leave transports behind even if a client never said QUIT."""
    mx = FakeMX("127.0.0.3", mx_port, name="mx3.test")
    mx.start()
    client = smtplib.SMTP("127.0.0.3", mx_port, timeout=5)
    try:
        client.ehlo()
        mx.stop()
    finally:
        client.close()
    mx.start()  # restartable on the same port
    mx.stop()
