"""Outbound delivery alone: the Deliverer handing N messages to one fake MX host.

The receiving side (FakeMX with PIPELINING, plaintext or STARTTLS, and the fake DNS) runs in a
child process, so the CPU figure is the delivering process's own: resolver look-ups (MX, TLSA),
the connection pool, TLS, the SMTP transaction. Prints msg/s and CPU ms/msg.

Usage: python bench/outbound_delivery.py [--messages 3000] [--concurrency 20] [--size 10240]
       [--kind plain|tls] [--no-pipelining] [--uvloop] [--server-tree DIR]
--server-tree runs the receiving side from another checkout (so an old Deliverer can be
measured against the same server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

TREE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TREE))

SERVER = """
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from tests.fakes.certs import leaf, make_ca
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.fakes.ports import free_port
kind, pipelining = sys.argv[2], sys.argv[3] == "1"
port = free_port("127.0.0.80")
cert = leaf(make_ca(), "mx.bench.test") if kind == "tls" else None
with FakeDNS() as dns, FakeMX("127.0.0.80", port, name="mx.bench.test", tls_cert=cert,
                              pipelining=pipelining) as mx:
    dns.add("bench.test", "MX", "10 mx.bench.test.")
    dns.add("mx.bench.test", "A", "127.0.0.80")
    print(json.dumps({"port": port, "nameserver": dns.nameserver}), flush=True)
    sys.stdin.read()
"""


def message(size: int) -> bytes:
    head = b"From: bench@clinic.test\r\nTo: r@bench.test\r\nSubject: bench\r\n\r\n"
    return head + (b"x" * 76 + b"\r\n") * max(1, (size - len(head)) // 78)


async def deliver_all(port: int, nameserver: str, messages: int, concurrency: int,
                      size: int) -> tuple[float, float, int]:
    from gateway.delivery.deliverer import REQUIREMENT_FOR_MODE, Deliverer, DeliverySettings
    from gateway.delivery.mx import MXResolver, make_resolver

    deliverer = Deliverer(MXResolver(make_resolver([nameserver], timeout=5.0)),
                          DeliverySettings(port=port, helo_name="gw.bench.test", timeout=30))
    content, failed = message(size), 0
    todo = iter(range(messages))
    requirement = REQUIREMENT_FOR_MODE["opportunistic"]

    async def worker() -> None:
        nonlocal failed
        for index in todo:
            result = await deliverer.deliver("bench.test", "bench@clinic.test",
                                             [f"r{index}@bench.test"], content, requirement)
            failed += result.outcome.value != "delivered"

    cpu = _cpu()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, used = time.perf_counter() - started, _cpu() - cpu
    await deliverer.close()
    return elapsed, used, failed


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--kind", default="plain", choices=["plain", "tls"])
    parser.add_argument("--no-pipelining", action="store_true")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--server-tree", default=str(TREE))
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, args.server_tree, args.kind,
         "0" if args.no_pipelining else "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": args.server_tree})
    try:
        assert server.stdout is not None
        where = json.loads(server.stdout.readline())
        if args.uvloop:
            import uvloop
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        elapsed, cpu, failed = asyncio.run(deliver_all(where["port"], where["nameserver"],
                                                       args.messages, args.concurrency,
                                                       args.size))
    finally:
        server.communicate("")
    print(f"{args.messages} x {args.size} B, {args.kind}, concurrency {args.concurrency},"
          f" pipelining {'off' if args.no_pipelining else 'offered'},"
          f" loop {'uvloop' if args.uvloop else 'asyncio'}: {args.messages / elapsed:7.1f} msg/s,"
          f" {1000 * cpu / args.messages:5.2f} ms CPU/msg, {failed} failed")


if __name__ == "__main__":
    main()
