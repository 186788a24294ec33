"""A private Postfix instance on loopback, playing the organization's mail server in front
of Sealgate: its own config directory, queue and log under a fresh directory in /tmp, started
with `postfix -c DIR start` and stopped with `postfix -c DIR stop` (the system instance and
/etc/postfix are never touched).

It relays everything to RELAYHOST (Sealgate), except the organization's own domain, which it
hands to ORG_SINK (the organization's mailboxes, a FakeMX the test reads): so what Sealgate
sends back through `internal.relay` (DSNs, portal replies) is seen arriving there.

Needs root (as CI runs) and Debian's postfix package (its `postfix` user and `postdrop`
group); a missing postfix is an error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["POSTFIX", "PrivatePostfix"]

POSTFIX = "/usr/sbin/postfix"

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{listen} inet n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
tlsproxy  unix  -       -       n       -       0       tlsproxy
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PrivatePostfix:
    def __init__(self, listen: tuple[str, int], relayhost: str, org_domain: str,
                 org_sink: str, tls_level: str = "may", ca_file: str = "") -> None:
        if not os.path.exists(POSTFIX):
            raise AssertionError(f"{POSTFIX} is missing: install Debian's postfix package"
                                 " (scripts/test does, without configuring the system instance)")
        # Postfix's daemons run as the postfix user and must reach their queue: pytest's own
        # temporary directories are private to root, so this one is made open to traverse.
        self.directory = Path(tempfile.mkdtemp(prefix="sealgate-postfix-"))
        self.directory.chmod(0o755)
        self.listen = listen
        self.config_dir = self.directory / "etc"
        self.queue_dir = self.directory / "queue"
        self.data_dir = self.directory / "data"
        self.maillog = self.directory / "maillog"
        self.relayhost = relayhost
        self.org_domain = org_domain
        self.org_sink = org_sink
        self.tls_level = tls_level
        self.ca_file = ca_file
        self._master_pid = 0

    def main_cf(self) -> str:
        host, _port = self.listen
        ca = f"smtp_tls_CAfile = {self.ca_file}\n" if self.ca_file else ""
        return f"""\
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.{self.org_domain}
mydomain = {self.org_domain}
myorigin = $mydomain
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# Nothing is delivered on this box: the organization's domain goes to its mailbox server
# (the sink), everything else to Sealgate.
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 local delivery disabled
alias_maps =
alias_database =
relay_domains = {self.org_domain}
relay_recipient_maps =
transport_maps = inline:{{{self.org_domain}=smtp:{self.org_sink}}}
relayhost = {self.relayhost}
smtp_bind_address = {host}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
biff = no
append_dot_mydomain = no
smtputf8_enable = no
smtp_tls_security_level = {self.tls_level}
smtp_tls_loglevel = 1
smtp_tls_session_cache_database = btree:${{data_directory}}/smtp_scache
{ca}smtpd_tls_security_level = none
maximal_backoff_time = 2s
minimal_backoff_time = 1s
queue_run_delay = 1s
maillog_file_prefixes = {self.directory}
maillog_file = {self.maillog}
"""

    def start(self, timeout: float = 30.0) -> None:
        # The store sets the test process's umask to 077 (gateway/storage/store.py): Postfix's
        # daemons, running as the postfix user, need to read their directories.
        for directory in (self.config_dir, self.queue_dir, self.data_dir):
            directory.mkdir(mode=0o755)
            directory.chmod(0o755)
        shutil.chown(self.data_dir, "postfix", "postfix")
        host, port = self.listen
        for name, text in (("main.cf", self.main_cf()),
                           ("master.cf", MASTER_CF.format(listen=f"{host}:{port}"))):
            (self.config_dir / name).write_text(text)
            (self.config_dir / name).chmod(0o644)
        for command in ("check", "start"):
            done = subprocess.run([POSTFIX, "-c", str(self.config_dir), command],
                                  capture_output=True, text=True, timeout=60, umask=0o022)
            if done.returncode != 0:
                raise AssertionError(f"postfix {command} failed ({done.returncode}):"
                                     f" {done.stdout}{done.stderr}\n{self.log_tail()}")
        pid_file = self.queue_dir / "pid" / "master.pid"
        deadline = time.monotonic() + timeout
        while not (pid_file.exists() and pid_file.read_text().strip() and _listening(host, port)):
            if pid_file.exists() and pid_file.read_text().strip():
                self._master_pid = int(pid_file.read_text().strip())
            if time.monotonic() > deadline:
                raise AssertionError(f"postfix did not listen on {host}:{port}\n{self.log_tail()}")
            time.sleep(0.05)
        self._master_pid = int(pid_file.read_text().strip())

    def stop(self) -> None:
        if self._master_pid:
            subprocess.run([POSTFIX, "-c", str(self.config_dir), "stop"],
                           capture_output=True, timeout=60, umask=0o022)
            deadline = time.monotonic() + 20
            while _alive(self._master_pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(self._master_pid):  # our own master, by its id: never by name
                os.kill(self._master_pid, 9)
            self._master_pid = 0
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivatePostfix:
        try:
            self.start()
        except BaseException:
            self.stop()  # a half-started instance leaves no process or directory behind
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:]) or "(no postfix log)"

    def wait_for_log(self, text: str, timeout: float = 30.0) -> str:
        """The first log line containing TEXT, once there is one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if text in line:
                    return line
            time.sleep(0.1)
        raise AssertionError(f"postfix never logged {text!r}:\n{self.log_tail()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0
