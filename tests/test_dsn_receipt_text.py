"""The receipt builder on its own: every way a server can be authenticated is named in the
text and in X-Sealgate-TLS-Authentication, and a caller's note joins the text once."""

from __future__ import annotations

import pytest

from gateway.queue.receipt import HandedOver, StoredForPickup, build_receipt
from gateway.tls.verdict import Authentication
from tests.dsn_mail import readable_text, status_blocks

ORIGINAL = b"From: a@clinic.test\r\nSubject: Results\r\n\r\nSecret body\r\n"


def receipt(*copies: HandedOver | StoredForPickup, note: tuple[str, ...] = ()) -> bytes:
    return build_receipt(reporting_mta="gw.clinic.test", sender="a@clinic.test",
                         queue_id="Q1", original=ORIGINAL, arrival=1_800_000_000.0,
                         copies=copies, note=note)


def handed_over(authentication: Authentication, tls: bool = True) -> HandedOver:
    return HandedOver("b@x.test", "mx.x.test", "192.0.2.1", "mx.x.test[192.0.2.1] said: 250 ok",
                      "TLSv1.3" if tls else None, "TLS_AES_128_GCM_SHA256" if tls else None,
                      authentication)


@pytest.mark.parametrize(("authentication", "named"), [
    (Authentication.DANE_EE, "authenticated by DANE-EE"),
    (Authentication.DANE_TA, "authenticated by DANE-TA"),
    (Authentication.MTA_STS, "authenticated by MTA-STS enforce"),
    (Authentication.PKIX, "authenticated by PKIX"),
    (Authentication.NONE, "was not authenticated")])
def test_each_authentication_is_named_in_text_and_field(authentication: Authentication,
                                                        named: str) -> None:
    raw = receipt(handed_over(authentication))
    assert named in " ".join(readable_text(raw).split())
    assert status_blocks(raw)[1]["X-Sealgate-TLS-Authentication"] == authentication.value


def test_a_copy_sent_without_tls_is_never_reported_as_authenticated() -> None:
    block = status_blocks(receipt(handed_over(Authentication.PKIX, tls=False)))[1]
    assert (block["X-Sealgate-TLS-Version"], block["X-Sealgate-TLS-Authentication"]) == (
        "none", "none")
    assert "X-Sealgate-TLS-Cipher" not in block


def test_a_callers_note_is_added_once_per_message() -> None:
    raw = receipt(handed_over(Authentication.PKIX), StoredForPickup("c@y.test", 1_801_000_000.0),
                  note=("Status and revocation: https://gw.clinic.test/s/abc",))
    assert readable_text(raw).count("https://gw.clinic.test/s/abc") == 1


def test_a_receipt_never_returns_the_body() -> None:
    raw = receipt(handed_over(Authentication.PKIX))
    assert b"Subject: Results" in raw and b"Secret body" not in raw
