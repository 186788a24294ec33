"""Relay throughput of a real `sealgate serve` through fake MX hosts on loopback.

Prints accepted messages/s (250 after fsync + commit) and end-to-end delivered messages/s.
Messages are spread over --domains recipient domains (d0.<kind>.test ...), all served by
one fake MX host: plain (no STARTTLS) or tls (STARTTLS with a trustme certificate).
Usage: python bench/relay_throughput.py [--messages 1000] [--connections 20] [--size 10240]
       [--kind plain|tls] [--domains 10]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import smtplib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.certs import leaf, make_ca, write_ca_pem  # noqa: E402
from tests.fakes.dns_server import FakeDNS  # noqa: E402
from tests.fakes.mx_host import FakeMX  # noqa: E402
from tests.fakes.ports import free_port  # noqa: E402
from tests.gateway_process import GatewayProcess, GatewaySettings  # noqa: E402


def message(index: int, size: int) -> bytes:
    head = (f"From: bench@clinic.test\r\nTo: r{index}@x\r\nSubject: bench {index}\r\n"
            f"Message-ID: <bench{index}@clinic.test>\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def send_batch(port: int, start: int, count: int, size: int, kind: str, domains: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("bench.clinic.test")
        for index in range(start, start + count):
            rcpt = f"r{index}@d{index % domains}.{kind}.test"
            client.sendmail("bench@clinic.test", [rcpt], message(index, size))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--kind", default="plain", choices=["plain", "tls"])
    parser.add_argument("--domains", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sealgate-bench-"))
    ca = make_ca()
    port = free_port("127.0.0.2", "127.0.0.3")
    policy_dir = work / "policies"
    policy_dir.mkdir()
    (policy_dir / "p.toml").write_text('[confidential]\nsubject_tags = ["[secure]"]\n')
    with FakeDNS() as dns, \
            FakeMX("127.0.0.2", port, name="mx.tls.test",
                   tls_cert=leaf(ca, "mx.tls.test")) as tls_mx, \
            FakeMX("127.0.0.3", port, name="mx.plain.test") as plain_mx:
        for name, ip in (("tls", "127.0.0.2"), ("plain", "127.0.0.3")):
            dns.add(f"mx.{name}.test", "A", ip)
            for number in range(args.domains):
                dns.add(f"d{number}.{name}.test", "MX", f"10 mx.{name}.test.")
        settings = GatewaySettings(nameserver=dns.nameserver, mx_port=port,
                                   ca_file=write_ca_pem(ca, work / "ca.pem"), policy_dir=policy_dir)
        gateway = GatewayProcess(work / "gw", settings)
        gateway.start()
        sink = tls_mx if args.kind == "tls" else plain_mx
        per = args.messages // args.connections
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.connections) as pool:
            list(pool.map(lambda c: send_batch(gateway.smtp_port, c * per, per, args.size,
                                               args.kind, args.domains),
                          range(args.connections)))
        accepted = time.perf_counter() - started
        sink.wait_for(per * args.connections, timeout=600)
        delivered = time.perf_counter() - started
        gateway.stop()
    total = per * args.connections
    print(f"messages: {total} x {args.size} B to {args.domains} {args.kind} domains"
          f" over {args.connections} connections")
    print(f"accepted:  {total / accepted:8.1f} msg/s ({accepted:.2f} s)")
    print(f"delivered: {total / delivered:8.1f} msg/s end to end ({delivered:.2f} s)")


if __name__ == "__main__":
    main()
