"""Port selection for loopback fakes.

Several fake MX hosts share one port number on different loopback IPs, because the
gateway dials every MX on the same (configurable) SMTP port. On Linux all of 127/8 is
local, so 127.0.0.2, 127.0.0.3, ... can be bound without any interface setup.
"""

from __future__ import annotations

import socket

__all__ = ["free_port"]

_ATTEMPTS = 50
# The kernel may offer a port again as soon as the probe closes it: a gateway given the same
# port for two listeners would fail, so this process never hands a port out twice.
_handed_out: set[int] = set()


def _can_bind(ip: str, port: int) -> bool:
    """Probe with SO_REUSEADDR like asyncio's create_server does, so a port that the
    real listener could take (e.g. one lingering in TIME_WAIT) is not rejected."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def free_port(*ips: str) -> int:
    """Return a TCP port that is currently free on 127.0.0.1 and on every IP given.

    The port is released before returning, so another process could grab it in the
    meantime; for a test suite on one machine that race is acceptable.
    """
    check = ("127.0.0.1", *ips)
    for _ in range(_ATTEMPTS):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((check[0], 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out and all(_can_bind(ip, port) for ip in check):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no common free port found on {check}")
