"""A raw SMTP conversation over a socket, for inputs smtplib refuses to produce."""

from __future__ import annotations

import socket


class RawSMTP:
    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                             source_address=(source, 0))
        self.buffer = b""
        self.greeting = self.reply()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSMTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reply(self) -> str:
        """One whole (possibly multi-line) reply."""
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection: " + "|".join(lines))
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def command(self, line: str | bytes) -> str:
        data = line if isinstance(line, bytes) else line.encode()
        self.sock.sendall(data + b"\r\n")
        return self.reply()

    def send_raw(self, data: bytes) -> str:
        self.sock.sendall(data)
        return self.reply()
