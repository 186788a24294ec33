"""`serve` is a supervisor with its workers under it: visible in ps by what they are,
restarted when they die, sharing the connection caps, and woken when mail is queued."""

from __future__ import annotations

import os
import signal
import time

from tests.conftest import make_message, wait_for_mail
from tests.fakes.holding_mx import HoldingMX
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.journey import recipient_state, wait_until
from tests.process_tree import command_line, wait_for_workers

WORKER_COMMAND = "-m gateway.workers"


def supervisor_pid(gateway: GatewayProcess) -> int:
    assert gateway.process is not None
    return gateway.process.pid


def test_workers_run_under_the_supervisor_with_names_saying_what_they_are(
        gateway: GatewayProcess) -> None:
    supervisor = supervisor_pid(gateway)
    listeners = wait_for_workers(supervisor, "smtp", 2)
    runners = wait_for_workers(supervisor, "delivery", 2)
    names = sorted(command_line(p).partition(WORKER_COMMAND)[2] for p in listeners + runners)
    assert names == [" delivery 1", " delivery 2", " smtp 1", " smtp 2"]


def test_mail_is_delivered_at_once_not_at_the_next_poll(
        own_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    # With a poll every minute, only the wake-up from the listener gets it out quickly.
    own_gateway.config.write_text(own_gateway.config.read_text().replace(
        'poll_interval = "0.2s"', 'poll_interval = "60s"'))
    own_gateway.start()
    wait_for_workers(supervisor_pid(own_gateway), "delivery", 2)
    time.sleep(1)  # past the runners' first turn
    rcpt = f"{unique}@plain.test"
    own_gateway.send(make_message("doctor@clinic.test", rcpt, "Wake up"))
    wait_for_mail(mx_hosts["plain"], rcpt, timeout=20)


def test_a_worker_that_keeps_dying_is_started_again_each_time(
        own_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    own_gateway.start()
    supervisor = supervisor_pid(own_gateway)
    for _ in range(2):
        victim = wait_for_workers(supervisor, "smtp", 2)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until("restarted", lambda gone=victim: gone not in wait_for_workers(
            supervisor, "smtp", 2), own_gateway)
    assert own_gateway.log_tail(200).count("was killed by SIGKILL; starting it again") == 2
    rcpt = f"{unique}@plain.test"
    own_gateway.send(make_message("doctor@clinic.test", rcpt, "Still here"))
    wait_for_mail(mx_hosts["plain"], rcpt)


def lease_holder(gateway: GatewayProcess, rcpt: str) -> tuple[str, int]:
    """The state of RCPT and the pid of the runner holding its lease (0: none)."""
    found = recipient_state(gateway.storage_dir, rcpt)
    assert found is not None, f"nothing queued to {rcpt}"
    state, owner = found
    pid = owner.rpartition(":")[2]  # workers' owner ids end in ":<pid>"
    return state, int(pid) if "/delivery-" in owner and pid.isdigit() else 0


def test_the_delivery_of_a_killed_runner_is_taken_over_long_before_its_lease_ends(
        own_gateway: GatewayProcess, holding_mx: HoldingMX, unique: str) -> None:
    own_gateway.start()  # delivery.lease is 10 minutes
    rcpt = f"{unique}@held.test"
    own_gateway.send(make_message("doctor@clinic.test", rcpt, "Held"))
    holding_mx.wait_for_copy(rcpt)  # the MX holds its reply to DATA
    state, holder = lease_holder(own_gateway, rcpt)
    assert state == "delivering" and holder
    holding_mx.release.set()  # the next attempt is answered at once
    os.kill(holder, signal.SIGKILL)
    wait_until("delivered", lambda: lease_holder(own_gateway, rcpt)[0] == "delivered",
               own_gateway)
    assert "1 deliveries of delivery worker" in own_gateway.log_tail(200)


def test_sighup_reaches_every_listener(gateway: GatewayProcess) -> None:
    start = gateway.log_path.stat().st_size
    os.kill(supervisor_pid(gateway), signal.SIGHUP)

    def reloaded() -> int:
        with gateway.log_path.open("rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace").count("policy reloaded from")
    wait_until("both listeners and the supervisor reloaded", lambda: reloaded() >= 3, gateway)
    assert "passed to 4 workers" in gateway.log_tail(20)
