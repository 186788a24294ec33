"""A real, authoritative-for-everything DNS server on loopback for end-to-end tests.

The gateway resolves MX, A/AAAA, TXT (MTA-STS) and TLSA records through dnspython.
Mocking the resolver would skip the wire format, the UDP->TCP fallback and the
rcode/flag handling that the gateway's policy decisions depend on, so this fake
speaks real DNS over UDP and TCP on 127.0.0.1.

It runs in its own thread with plain sockets and a selector, so it does not care
which (if any) asyncio event loop the test uses.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["FakeDNS"]

_MAX_CNAME_HOPS = 8
_BIND_ATTEMPTS = 50
_CLASSIC_UDP_LIMIT = 512


@dataclass
class _TcpConn:
    """Per-connection receive buffer; TCP DNS messages are length-prefixed and may
    arrive split or batched, so bytes are accumulated until a whole message exists."""

    sock: socket.socket
    inbuf: bytearray = field(default_factory=bytearray)


def _absolute(name: str) -> dns.name.Name:
    """Owner names from tests are written without the trailing dot; the zone is keyed
    by absolute names so "a.test" and "a.test." are the same record."""
    return dns.name.from_text(name, origin=dns.name.root)


def _bind_udp_and_tcp(host: str) -> tuple[socket.socket, socket.socket]:
    """The gateway config names one "host:port" nameserver that dnspython uses for
    both UDP and the TCP fallback, so both sockets must share a port. The OS picks a
    free UDP port; the TCP port of the same number may be taken, hence the retries."""
    last_error: OSError | None = None
    for _ in range(_BIND_ATTEMPTS):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((host, port))
                tcp.listen(16)
            except OSError as exc:
                tcp.close()
                raise exc
        except OSError as exc:
            udp.close()
            last_error = exc
            continue
        return udp, tcp
    raise RuntimeError(f"could not bind UDP+TCP on one port of {host}: {last_error}")


class FakeDNS:
    """Serves records added with add(); every name it knows is answered with AA set.

    Unknown names get NXDOMAIN, known names without the asked type get NODATA, and
    CNAMEs are chased inside the fake's data the way an authoritative server would.
    """

    host: str
    port: int

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._lock = threading.Lock()
        self._records: dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rrset.RRset]] = {}
        self._rcodes: dict[dns.name.Name, dns.rcode.Rcode] = {}
        self._authenticated: set[dns.name.Name] = set()
        self._queries: list[tuple[str, str]] = []
        self._dnssec_asked: list[tuple[str, str, bool, bool]] = []
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ----------------------------------------------------------------- lifecycle

    @property
    def nameserver(self) -> str:
        """The "host:port" form used by the gateway's `dns.nameservers` setting."""
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        """Bind both sockets before returning, so the port is usable immediately."""
        if self._thread is not None:
            raise RuntimeError("FakeDNS already running")
        self._udp, self._tcp = _bind_udp_and_tcp(self.host)
        self._udp.setblocking(False)
        self._tcp.setblocking(False)
        self.port = self._udp.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name=f"FakeDNS:{self.port}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close every socket, since tests run with warnings as
        errors and a leaked socket surfaces as a ResourceWarning."""
        if self._thread is None:
            return
        self._stopping.set()
        assert self._wake_w is not None
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass
        self._thread.join(timeout=5.0)
        if self._thread.is_alive():
            raise RuntimeError("FakeDNS thread did not stop")
        self._thread = None
        for sock in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = self._wake_r = self._wake_w = None

    def __enter__(self) -> FakeDNS:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ zone data

    def add(self, name: str, rdtype: str, *values: str, ttl: int = 60) -> None:
        """Add records; repeated calls for the same name and type accumulate, so a
        test can build multi-MX or multi-A sets incrementally. Names inside rdata
        (MX exchange, CNAME target) are also taken as absolute."""
        if not values:
            raise ValueError("add() needs at least one rdata value")
        owner = _absolute(name)
        rrset = dns.rrset.from_text_list(
            owner,
            ttl,
            dns.rdataclass.IN,
            rdtype,
            list(values),
            origin=dns.name.root,
            relativize=False,
        )
        with self._lock:
            node = self._records.setdefault(owner, {})
            existing = node.get(rrset.rdtype)
            if existing is None:
                node[rrset.rdtype] = rrset
            else:
                existing.update_ttl(ttl)
                existing.union_update(rrset)

    def set_rcode(self, name: str, rcode: str) -> None:
        """Force a failure such as SERVFAIL for one name, regardless of its data;
        "NOERROR" removes the override and restores normal answers."""
        code = dns.rcode.from_text(rcode)
        owner = _absolute(name)
        with self._lock:
            if code == dns.rcode.NOERROR:
                self._rcodes.pop(owner, None)
            else:
                self._rcodes[owner] = code

    def set_authenticated(self, name: str, ad: bool) -> None:
        """Mark answers for a name as DNSSEC-validated (AD flag), which is what a
        validating recursive resolver would signal for DANE-relevant lookups."""
        owner = _absolute(name)
        with self._lock:
            if ad:
                self._authenticated.add(owner)
            else:
                self._authenticated.discard(owner)

    def clear(self) -> None:
        """Forget all records, overrides and the query log between test phases."""
        with self._lock:
            self._records.clear()
            self._rcodes.clear()
            self._authenticated.clear()
            self._queries.clear()
            self._dnssec_asked.clear()

    @property
    def queries(self) -> list[tuple[str, str]]:
        """Snapshot of (qname without trailing dot, rdtype text) in arrival order."""
        with self._lock:
            return list(self._queries)

    @property
    def dnssec_asked(self) -> list[tuple[str, str, bool, bool]]:
        """(qname, rdtype, AD set in the query, DO set in the query) in arrival order: a
        validating resolver reports validation only to a client that asks (RFC 6840 5.7)."""
        with self._lock:
            return list(self._dnssec_asked)

    # ----------------------------------------------------------------- answering

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        """Build the authoritative response; all lookups happen under the lock so a
        concurrent add() never yields a half-updated answer."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        with self._lock:
            self._queries.append(
                (qname.to_text(omit_final_dot=True), dns.rdatatype.to_text(qtype))
            )
            self._dnssec_asked.append(
                (qname.to_text(omit_final_dot=True), dns.rdatatype.to_text(qtype),
                 bool(query.flags & dns.flags.AD), bool(query.ednsflags & dns.flags.DO))
            )
            if qname in self._authenticated:
                response.flags |= dns.flags.AD
            if question.rdclass != dns.rdataclass.IN:
                response.set_rcode(dns.rcode.REFUSED)
                return response
            forced = self._rcodes.get(qname)
            if forced is not None:
                response.set_rcode(forced)
                return response
            response.set_rcode(self._resolve_into(response, qname, qtype))
        return response

    def _resolve_into(
        self,
        response: dns.message.Message,
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
    ) -> dns.rcode.Rcode:
        """Fill the answer section following CNAMEs; per RFC 6604 the rcode reflects
        the last name in the chain, so a dangling CNAME yields NXDOMAIN."""
        name = qname
        for _ in range(_MAX_CNAME_HOPS):
            node = self._records.get(name)
            if node is None:
                return dns.rcode.NXDOMAIN
            if qtype == dns.rdatatype.ANY:
                response.answer.extend(node.values())
                return dns.rcode.NOERROR
            wanted = node.get(qtype)
            if wanted is not None:
                response.answer.append(wanted)
                return dns.rcode.NOERROR
            cname = node.get(dns.rdatatype.CNAME)
            if cname is None:
                return dns.rcode.NOERROR  # NODATA
            response.answer.append(cname)
            name = cname[0].target
        return dns.rcode.SERVFAIL  # CNAME loop or overly long chain

    def _handle_wire(self, wire: bytes, udp: bool) -> bytes | None:
        """Parse one query and render its response; garbage is dropped silently, as a
        real server would, rather than crashing the serving thread."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        response = self._answer(query)
        if not udp:
            return response.to_wire()
        limit = max(_CLASSIC_UDP_LIMIT, query.payload) if query.edns >= 0 else _CLASSIC_UDP_LIMIT
        # prefer_truncation sets TC instead of raising, prompting the TCP retry.
        return response.to_wire(max_size=limit, prefer_truncation=True)

    # ------------------------------------------------------------------- serving

    def _serve(self) -> None:
        """Single-threaded selector loop over UDP, the TCP listener and clients."""
        assert self._udp is not None and self._tcp is not None and self._wake_r is not None
        conns: dict[int, _TcpConn] = {}
        with selectors.DefaultSelector() as sel:
            sel.register(self._udp, selectors.EVENT_READ, "udp")
            sel.register(self._tcp, selectors.EVENT_READ, "listen")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            try:
                while not self._stopping.is_set():
                    for key, _ in sel.select(timeout=1.0):
                        if key.data == "udp":
                            self._on_udp()
                        elif key.data == "listen":
                            self._on_accept(sel, conns)
                        elif key.data == "tcp":
                            self._on_tcp(sel, conns, key.fileobj)  # type: ignore[arg-type]
            finally:
                for conn in conns.values():
                    sel.unregister(conn.sock)
                    conn.sock.close()

    def _on_udp(self) -> None:
        assert self._udp is not None
        try:
            wire, peer = self._udp.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        reply = self._handle_wire(wire, udp=True)
        if reply is not None:
            try:
                self._udp.sendto(reply, peer)
            except OSError:
                pass

    def _on_accept(self, sel: selectors.BaseSelector, conns: dict[int, _TcpConn]) -> None:
        assert self._tcp is not None
        try:
            sock, _ = self._tcp.accept()
        except (BlockingIOError, InterruptedError):
            return
        # Replies are small and clients wait for them, so a blocking send with a
        # timeout keeps the loop simple without risking a hang.
        sock.settimeout(5.0)
        conns[sock.fileno()] = _TcpConn(sock)
        sel.register(sock, selectors.EVENT_READ, "tcp")

    def _on_tcp(
        self, sel: selectors.BaseSelector, conns: dict[int, _TcpConn], sock: socket.socket
    ) -> None:
        conn = conns[sock.fileno()]
        try:
            chunk = sock.recv(65535)
        except OSError:
            chunk = b""
        if chunk:
            conn.inbuf += chunk
            if self._drain_tcp(conn):
                return
        sel.unregister(sock)
        del conns[sock.fileno()]
        sock.close()

    def _drain_tcp(self, conn: _TcpConn) -> bool:
        """Answer every complete message in the buffer; False means close the socket."""
        while len(conn.inbuf) >= 2:
            (length,) = struct.unpack("!H", conn.inbuf[:2])
            if len(conn.inbuf) < 2 + length:
                break
            wire = bytes(conn.inbuf[2 : 2 + length])
            del conn.inbuf[: 2 + length]
            reply = self._handle_wire(wire, udp=False)
            if reply is None:
                return False
            try:
                conn.sock.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                return False
        return True
