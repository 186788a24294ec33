"""The shortcuts for plain mailboxes change nothing: the listener reads every MAIL and RCPT
path exactly as aiosmtpd's header-parser reading does, and the runner writes every address
exactly as aiosmtplib's quoting does."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP
from aiosmtplib.email import quote_address

from gateway.delivery.pipeline import envelope_lines
from gateway.inbound.server import GatewaySMTP

PATHS = [
    "<a@b.com>", "<a.b@c.d.com> SIZE=100", "<a@b.com>  BODY=8BITMIME SIZE=1",
    "<x+y=z@ex-ample.test>", "<A_b-c@B.COM> SMTPUTF8", "<a@b.com> ", "<a@b.com>\tX",
    '<"quoted local"@b.com>', "<a..b@c.com>", "<.a@b.com>", "<a@b>", "<a@b.com>x",
    "<a@[192.0.2.1]>", " <a@b.com>", "<a@b.com>(comment)", "<@relay.test:a@b.com>",
    "a@b.com", "<>",
]


def engine(local_part_limit: int = 0) -> GatewaySMTP:
    smtp = GatewaySMTP.__new__(GatewaySMTP)  # only the parser is used: no connection
    smtp.local_part_limit = local_part_limit
    return smtp


@pytest.mark.parametrize("path", PATHS)
def test_a_path_is_read_as_aiosmtpd_reads_it(path: str) -> None:
    smtp = engine()
    assert smtp._getaddr(path) == SMTP._getaddr(smtp, path)


def test_a_local_part_over_the_limit_is_refused_as_aiosmtpd_refuses_it() -> None:
    smtp = engine(local_part_limit=4)
    assert smtp._getaddr("<abcdef@b.com>") == (None, None)


ADDRESSES = ["a@b.com", "first.last+tag@sub.example.org", "x_y=z@ex-ample.test",
             '"already quoted"@b.com', "a@b", "a@[192.0.2.1]", "",
             "Ünïcode@exämple.test"]


@pytest.mark.parametrize("address", ADDRESSES)
def test_an_address_is_written_as_aiosmtplib_quotes_it(address: str) -> None:
    expected = f"RCPT TO:{quote_address(address)}\r\n".encode()
    assert envelope_lines("s@b.com", [address], [], "utf-8").split(b"\r\n", 1)[1] \
        .startswith(expected)
