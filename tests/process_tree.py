"""The worker processes of a running `sealgate serve`, read from /proc."""

from __future__ import annotations

import signal
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def workers(supervisor: int, kind: str) -> list[int]:
    """Pids of the supervisor's workers of KIND ("smtp" or "delivery")."""
    return [p for p in children(supervisor)
            if f"-m gateway.workers {kind} " in command_line(p) + " "]


def wait_for_workers(supervisor: int, kind: str, count: int, timeout: float = 30) -> list[int]:
    """Once the supervisor has COUNT workers of KIND, that have all said they serve
    (their startup signal mask is lifted)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [p for p in workers(supervisor, kind) if _serving(p)]
        if len(found) == count:
            return found
        assert time.monotonic() < deadline, f"{kind} workers: {found}, wanted {count}"
        time.sleep(0.05)


def _serving(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    blocked = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("SigBlk:")), 16)
    return not blocked & (1 << (signal.SIGHUP - 1))


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def wait_until_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.05)


def established_connections(pid: int, local_port: int) -> int:
    """How many established TCP connections to LOCAL_PORT the process PID holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "01" and int(local.rpartition(":")[2], 16) == local_port \
                    and inode in inodes:
                count += 1
    return count
