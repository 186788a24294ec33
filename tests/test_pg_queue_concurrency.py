"""The PostgreSQL queue when nodes settle the last recipients of one message at the same
moment (a message to two domains, each claimed by another node): each settlement alone
still sees the other's recipient pending, so they take turns at removing the content, and
the second one, seeing the first committed, removes it. The two transactions are driven
step by step here, in the order in which, without the turns, both would keep it."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.storage.postgres.storage import PostgresStorage
from gateway.storage.protocols import Route, Settlement

SENDER = "doctor@clinic.test"


def test_content_goes_when_two_nodes_settle_its_last_recipients_together(
        open_pg: Callable[..., PostgresStorage]) -> None:
    one, other = open_pg(), open_pg()
    message_id = one.enqueue(SENDER, [Route("a@one.test"), Route("b@two.test")], b"x\r\n")
    [first] = one.claim_due(limit=1)
    [second] = other.claim_due(limit=1)
    with other.db.transaction() as theirs, ThreadPoolExecutor(1) as pool:
        with one.db.transaction() as mine:
            one._settle_rows(mine, Settlement(message_id, {first.rcpt: "250 ok"}, "delivered"))
            other._settle_rows(theirs, Settlement(message_id, {second.rcpt: "250 ok"},
                                                  "delivered"))
            one._release_content_if_done(mine, message_id)  # the other recipient is pending
            # The other node's turn comes once this transaction has committed.
            releasing = pool.submit(other._release_content_if_done, theirs, message_id)
        releasing.result(timeout=10)
    with pytest.raises(FileNotFoundError):
        one.read_spool(message_id)
