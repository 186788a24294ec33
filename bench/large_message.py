"""Peak memory of the gateway's processes (the supervisor and every worker) while they
accept, encrypt and store one large confidential message (pickup), read from
/proc/<pid>/status (VmHWM, the resident peak of each process).

Usage: python bench/large_message.py [--size-mb 100]
"""

from __future__ import annotations

import argparse
import smtplib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.certs import make_ca, write_ca_pem  # noqa: E402
from tests.fakes.dns_server import FakeDNS  # noqa: E402
from tests.fakes.mx_host import FakeMX  # noqa: E402
from tests.fakes.ports import free_port  # noqa: E402
from tests.gateway_process import GatewayProcess, GatewaySettings  # noqa: E402


def resident_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def process_tree(root: int) -> list[int]:
    """ROOT and every process below it (the supervisor's workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def big_message(size: int) -> bytes:
    head = b"From: d@clinic.test\r\nTo: p@plain.test\r\nSubject: [secure] scan\r\n\r\n"
    line = b"x" * 998 + b"\r\n"
    return head + line * (size // len(line))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sealgate-large-"))
    port = free_port("127.0.0.3")
    (work / "policies").mkdir()
    (work / "policies" / "p.toml").write_text('[confidential]\nsubject_tags = ["[secure]"]\n'
                                              '[default]\nmode = "pickup"\n')
    content = big_message(args.size_mb * 1024 * 1024)
    with FakeDNS() as dns, FakeMX("127.0.0.3", port, name="mx.plain.test") as sink:
        dns.add("plain.test", "MX", "10 mx.plain.test.")
        dns.add("mx.plain.test", "A", "127.0.0.3")
        settings = GatewaySettings(nameserver=dns.nameserver, mx_port=port,
                                   ca_file=write_ca_pem(make_ca(), work / "ca.pem"),
                                   policy_dir=work / "policies",
                                   extra={"smtp": {"max_message_size": len(content) + 1024}})
        gateway = GatewayProcess(work / "gw", settings)
        gateway.start()
        assert gateway.process is not None
        pids = process_tree(gateway.process.pid)
        idle = {pid: resident_kib(pid, "VmRSS") for pid in pids}
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=300) as client:
            client.sendmail("d@clinic.test", ["p@plain.test"], content)
        accepted = time.perf_counter() - started
        sink.wait_for(1, timeout=300)  # the pickup notification: stored and encrypted by then
        stored = time.perf_counter() - started
        growth = {pid: resident_kib(pid, "VmHWM") - idle[pid] for pid in pids}
        gateway.stop()
    size_mib = len(content) / 1048576
    print(f"message: {size_mib:.0f} MiB, confidential, stored for pickup")
    print(f"accepted in {accepted:.1f} s, encrypted and stored in {stored:.1f} s")
    worst = max(growth, key=lambda pid: growth[pid])
    print(f"{len(pids)} gateway processes, idle {sum(idle.values()) / 1024:.0f} MiB in all")
    print(f"peak RSS growth: {growth[worst] / 1024:.0f} MiB in the process that grew most"
          f" = {growth[worst] / 1024 / size_mib:.2f} x the message size;"
          f" {sum(growth.values()) / 1024:.0f} MiB summed over all processes"
          f" = {sum(growth.values()) / 1024 / size_mib:.2f} x")


if __name__ == "__main__":
    main()
