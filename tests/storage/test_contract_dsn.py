"""Contract: what a sender asked of delivery status notifications (RFC 3461) is kept with
the message in the queue: RET and ENVID per message, NOTIFY and ORCPT per recipient, and
the policy's receipt flag, all given back on the claimed recipients; and a pickup staged
with a receipt queues it in the same unit of work as the notification."""

from __future__ import annotations

from gateway.storage.protocols import EnvelopeDSN, Report, Route, StagedPickup, Storage
from tests.storage.helpers import FakeClock

SENDER = "doctor@clinic.test"
MESSAGE = b"From: doctor@clinic.test\r\nSubject: Receipts\r\n\r\nBody\r\n"


def test_claimed_recipients_carry_the_messages_ret_and_envid(storage: Storage) -> None:
    storage.enqueue(SENDER, [Route("a@x.test"), Route("b@y.test")], MESSAGE,
                    dsn=EnvelopeDSN("HDRS", "Case-Kept id=1"))
    claimed = storage.claim_due()
    assert {c.dsn for c in claimed} == {EnvelopeDSN("HDRS", "Case-Kept id=1")}


def test_claimed_recipients_carry_their_own_notify_orcpt_and_receipt(storage: Storage) -> None:
    storage.enqueue(SENDER, [Route("a@x.test", notify="SUCCESS,FAILURE",
                                   orcpt="rfc822;Alice@X.test"),
                             Route("b@x.test", True, "require-tls", notify="NEVER",
                                   receipt=True)], MESSAGE)
    claimed = {c.rcpt: c for c in storage.claim_due()}
    assert (claimed["a@x.test"].notify, claimed["a@x.test"].orcpt,
            claimed["a@x.test"].receipt) == ("SUCCESS,FAILURE", "rfc822;Alice@X.test", False)
    assert (claimed["b@x.test"].notify, claimed["b@x.test"].orcpt,
            claimed["b@x.test"].receipt) == ("NEVER", "", True)


def test_a_message_queued_without_dsn_parameters_has_none(storage: Storage) -> None:
    storage.enqueue(SENDER, [Route("a@x.test")], MESSAGE)
    [claimed] = storage.claim_due()
    assert (claimed.dsn, claimed.notify, claimed.orcpt, claimed.receipt) == (
        EnvelopeDSN(), "", "", False)


def test_a_pickup_staged_with_a_receipt_queues_it_beside_the_notification(
        storage: Storage, clock: FakeClock) -> None:
    message_id = storage.enqueue(SENDER, [Route("p@patients.test", True, "pickup")], MESSAGE)
    storage.claim_due()
    notification = Report("secure-mail@clinic.test", Route("p@patients.test"),
                          b"Subject: A message is waiting\r\n\r\nlink\r\n")
    receipt = Report("", Route(SENDER, reason="delivery status notification"),
                     b"Subject: Delivery receipt\r\n\r\nstored\r\n")
    storage.stage_pickup(StagedPickup(message_id, SENDER, "p@patients.test", clock.now + 86400,
                                      "pickup-receipt", "stored for pickup: policy",
                                      notification, receipt))
    waiting = {w.rcpt: w for w in storage.waiting_recipients()}
    assert set(waiting) == {"p@patients.test", SENDER}
    assert waiting[SENDER].sender == ""  # a DSN: null reverse-path (RFC 3461 6.1)
    assert storage.read_spool(waiting[SENDER].message_id).startswith(b"Subject: Delivery")
