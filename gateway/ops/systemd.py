"""sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. `sealgate serve` under
`Type=notify` (conf/sealgate.service) says READY=1 once every worker serves, STOPPING=1
when a stop begins."""

from __future__ import annotations

import os
import socket


def sd_notify(state: str) -> bool:
    """Send STATE ("READY=1", ...) to the service manager; False when not run by one."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError:
        return False  # the manager went away: nothing to tell
    return True
