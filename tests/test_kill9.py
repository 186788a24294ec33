"""kill -9 in the middle of a load: nothing that got a 250 is lost, whichever processes of
the gateway are killed (the supervisor, one worker, or all of them at once). The gateways
here run two SMTP listeners and two queue runners (conftest's gateway_settings)."""

from __future__ import annotations

import os
import signal

from tests.conftest import wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.load import Load
from tests.process_tree import children, wait_for_workers, wait_until_gone

MESSAGES = 60
CONNECTIONS = 6


def supervisor_pid(gateway: GatewayProcess) -> int:
    assert gateway.process is not None
    return gateway.process.pid


def assert_all_delivered(load: Load, mx: FakeMX) -> None:
    for rcpt in load.acknowledged:
        wait_for_mail(mx, rcpt, timeout=60)


def test_every_acknowledged_message_is_delivered_after_kill_9_during_load(
        own_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    own_gateway.start()
    load = Load(own_gateway, [f"{unique}-{n}@plain.test" for n in range(MESSAGES)], CONNECTIONS)
    load.run_with(own_gateway.kill_hard, after=MESSAGES // 3)
    own_gateway.start()
    assert_all_delivered(load, mx_hosts["plain"])


def test_workers_do_not_outlive_a_killed_supervisor(
        own_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX]) -> None:
    own_gateway.start()
    workers = children(supervisor_pid(own_gateway))
    assert len(workers) == 4
    own_gateway.kill_hard()
    wait_until_gone(workers)


def test_every_acknowledged_message_is_delivered_after_kill_9_of_every_process(
        own_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    own_gateway.start()
    everyone = [supervisor_pid(own_gateway), *children(supervisor_pid(own_gateway))]

    def kill_all() -> None:
        for pid in everyone:
            os.kill(pid, signal.SIGKILL)

    load = Load(own_gateway, [f"{unique}-{n}@plain.test" for n in range(MESSAGES)], CONNECTIONS)
    load.run_with(kill_all, after=MESSAGES // 3)
    own_gateway.stop()  # reaps the supervisor
    wait_until_gone(everyone)
    own_gateway.start()
    assert_all_delivered(load, mx_hosts["plain"])


def test_a_killed_queue_runner_is_restarted_and_nothing_acknowledged_is_lost(
        own_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    own_gateway.start()
    supervisor = supervisor_pid(own_gateway)
    victim, _ = wait_for_workers(supervisor, "delivery", 2)
    load = Load(own_gateway, [f"{unique}-{n}@plain.test" for n in range(MESSAGES)], CONNECTIONS)
    load.run_with(lambda: os.kill(victim, signal.SIGKILL), after=MESSAGES // 3)
    assert_all_delivered(load, mx_hosts["plain"])
    assert victim not in wait_for_workers(supervisor, "delivery", 2)
    assert "delivery worker 1 (pid" in own_gateway.log_tail(200)


def test_a_killed_smtp_listener_is_restarted_and_nothing_acknowledged_is_lost(
        own_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    own_gateway.start()
    supervisor = supervisor_pid(own_gateway)
    victim, _ = wait_for_workers(supervisor, "smtp", 2)
    load = Load(own_gateway, [f"{unique}-{n}@plain.test" for n in range(MESSAGES)], CONNECTIONS)
    load.run_with(lambda: os.kill(victim, signal.SIGKILL), after=MESSAGES // 3)
    assert_all_delivered(load, mx_hosts["plain"])
    assert victim not in wait_for_workers(supervisor, "smtp", 2)
