"""Routing policy: admin-edited TOML files, merged, and the per-recipient decision they make.

Every rule keeps the file and line it came from, so `sealgate route` and `policy check`
can point the admin at the exact place that decided.
"""

from __future__ import annotations

import email.headerregistry
import email.policy
import functools
import ipaddress
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from gateway.classify.common import Origin as Origin
from gateway.classify.common import PolicyError as PolicyError
from gateway.classify.rules import (
    ContentFindings,
    ContentRule,
    ScanSettings,
    first_match,
    merge_settings,
    parse_rules,
)

MODES = ("require-tls", "require-verified-tls", "pickup")
OPPORTUNISTIC = "opportunistic"
_SECTION_KEYS = {
    "confidential": {"subject_tags", "strip_tags", "headers", "receipts"},
    "default": {"mode"},
    "domain": {"match", "mode", "nexthop", "tls_name"},
    "rule": set(),  # checked by rules.parse_rule
    "policy": set(),  # checked by rules.merge_settings
}
_DOMAIN_PATTERN = re.compile(r"^(\*\.)?([a-z0-9-]+\.)*[a-z0-9-]+$")
_HOST_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*"
                        r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# "host", "host:port", "[host or address]", "[host or address]:port" (Postfix's transport
# map syntax, with an optional "smtp:" in front as in a transport map entry).
_SMTP_TRANSPORTS = {"smtp", "relay"}
_OTHER_TRANSPORTS = {"lmtp", "error", "retry", "local", "virtual", "discard", "pipe", "uucp",
                     "bsmtp"}
_NEXTHOP = re.compile(r"^\[(?P<bracketed>[^\[\]]+)\](?::(?P<bport>[^:]*))?$"
                      r"|^(?P<host>[^:\[\]]+)(?::(?P<port>[^:]*))?$")


@dataclass(frozen=True)
class NextHop:
    """Where mail for a domain goes instead of its MX hosts, like a Postfix transport map
    entry. HOST is a name or an address; MX_LOOKUP is False for the bracketed form (the
    host is used as is: its A/AAAA records, or the address itself); PORT None means
    `delivery.port`. TLS_NAME is the rule's `tls_name` ("" when not given)."""

    host: str
    port: int | None
    mx_lookup: bool
    text: str
    tls_name: str = ""

    @property
    def is_address(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def name_checked(self, domain: str) -> str:
        """The name a certificate must carry for require-verified-tls: the rule's tls_name
        when given; else the nexthop host as written; for an address, the recipient
        DOMAIN (an address is no name a certificate can be checked against)."""
        if self.tls_name:
            return self.tls_name
        return domain.lower().rstrip(".") if self.is_address else self.host

    def as_dict(self) -> dict[str, Any]:
        return {"nexthop": self.text, "host": self.host, "port": self.port,
                "mx_lookup": self.mx_lookup, "tls_name": self.tls_name}


@dataclass(frozen=True)
class DomainRule:
    match: str
    mode: str
    origin: Origin
    nexthop: NextHop | None = None

    def matches(self, domain: str) -> bool:
        if self.match.startswith("*."):
            return domain.endswith(self.match[1:])
        return domain == self.match


@dataclass
class Policy:
    subject_tags: list[tuple[str, Origin]] = field(default_factory=list)
    strip_tags: bool = True
    receipts: bool = False  # confidential mail gets a receipt for its sender (DSN success)
    headers: dict[str, list[str]] = field(default_factory=dict)
    header_origins: dict[str, Origin] = field(default_factory=dict)
    default_mode: str = "require-tls"
    default_origin: Origin | None = None
    rules: list[DomainRule] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    content_rules: list[ContentRule] = field(default_factory=list)
    scan: ScanSettings = field(default_factory=ScanSettings)

    @property
    def needs_body(self) -> bool:
        """Whether a rule looks at the body or attachments: only then is the body scanned."""
        return any(rule.needs_body for rule in self.content_rules)


@dataclass
class PolicyReport:
    """What `policy check` says: every error (file:line each) and warning; POLICY when usable."""

    policy: Policy | None
    errors: list[str]
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        usable = self.policy is not None
        return {"ok": usable, "errors": self.errors, "warnings": self.warnings,
                "files": self.policy.files if self.policy else [],
                "domain_rules": len(self.policy.rules) if self.policy else 0,
                "rules": len(self.policy.content_rules) if self.policy else 0,
                "default_mode": self.policy.default_mode if self.policy else None}


@dataclass(frozen=True)
class Decision:
    """The verdict for one recipient: is it confidential, why, and what mode applies."""

    recipient: str
    confidential: bool
    why: str
    mode: str
    rule: str
    content_rule: str = ""  # the [[rule]] that decided, by name
    where: tuple[str, ...] = ()  # where its conditions held (never the text that matched)

    def as_dict(self) -> dict[str, Any]:
        return {"recipient": self.recipient, "confidential": self.confidential,
                "why": self.why, "mode": self.mode, "rule": self.rule,
                "content_rule": self.content_rule, "where": list(self.where)}


def _line_of(lines: list[str], pattern: str, start: int = 0) -> int:
    regex = re.compile(pattern)
    for number in range(start, len(lines)):
        if regex.search(lines[number]):
            return number + 1
    return start + 1 if start < len(lines) else 1


def _section_line(lines: list[str], name: str) -> int:
    return _line_of(lines, rf"^\s*\[\s*{name}\s*\]")


def _check_keys(path: str, lines: list[str], section: str, table: dict[str, Any],
                start: int) -> None:
    for key in table:
        if key not in _SECTION_KEYS[section]:
            line = _line_of(lines, rf"^\s*\"?{re.escape(key)}\"?\s*=", start)
            raise PolicyError(f"{path}:{line}: unknown key {key!r} in [{section}]"
                              f" (allowed: {', '.join(sorted(_SECTION_KEYS[section]))})")


def _check_mode(path: str, line: int, mode: Any) -> str:
    if mode not in MODES:
        raise PolicyError(f"{path}:{line}: mode {mode!r} is not one of {', '.join(MODES)}")
    return str(mode)


def _merge_confidential(policy: Policy, path: str, lines: list[str], table: dict[str, Any]) -> None:
    start = _section_line(lines, "confidential") - 1
    _check_keys(path, lines, "confidential", table, start)
    tags = table.get("subject_tags", [])
    line = _line_of(lines, r"^\s*subject_tags\s*=", start)
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        raise PolicyError(f"{path}:{line}: subject_tags must be a list of non-empty strings")
    policy.subject_tags += [(t, Origin(path, line)) for t in tags]
    if "strip_tags" in table:
        if not isinstance(table["strip_tags"], bool):
            line = _line_of(lines, r"^\s*strip_tags\s*=", start)
            raise PolicyError(f"{path}:{line}: strip_tags must be true or false")
        policy.strip_tags = table["strip_tags"]
    if "receipts" in table:
        if not isinstance(table["receipts"], bool):
            line = _line_of(lines, r"^\s*receipts\s*=", start)
            raise PolicyError(f"{path}:{line}: receipts must be true or false")
        policy.receipts = table["receipts"]
    headers = table.get("headers", {})
    line = _line_of(lines, r"^\s*headers\s*=|^\s*\[\s*confidential\.headers\s*\]", start)
    if not isinstance(headers, dict):
        raise PolicyError(f"{path}:{line}: headers must be a table of header = [values]")
    for name, values in headers.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise PolicyError(f"{path}:{line}: header {name!r} needs a list of values")
        policy.headers.setdefault(name.lower(), []).extend(v.strip().lower() for v in values)
        policy.header_origins[name.lower()] = Origin(path, line)


def _merge_domains(policy: Policy, path: str, lines: list[str], rules: Any,
                   errors: list[str]) -> None:
    if not isinstance(rules, list):
        raise PolicyError(f"{path}:1: [[domain]] must be an array of tables")
    line = 0
    for rule in rules:
        line = _line_of(lines, r"^\s*\[\[\s*domain\s*\]\]", line)
        try:
            _merge_domain(policy, path, lines, rule, line)
        except PolicyError as exc:
            errors.append(str(exc))


def _merge_domain(policy: Policy, path: str, lines: list[str], rule: dict[str, Any],
                  line: int) -> None:
    seen = {r.match: r.origin for r in policy.rules}
    _check_keys(path, lines, "domain", rule, line - 1)
    match = str(rule.get("match", "")).strip().lower()
    if not _DOMAIN_PATTERN.match(match):
        raise PolicyError(f"{path}:{line}: match {rule.get('match')!r} must be a domain"
                          " like example.org or *.example.org")
    if match in seen:
        raise PolicyError(f"{path}:{line}: duplicate rule for {match!r} (first at {seen[match]})")
    mode = _check_mode(path, _line_of(lines, r"^\s*mode\s*=", line - 1), rule.get("mode"))
    nexthop = _check_nexthop(path, lines, rule, line)
    policy.rules.append(DomainRule(match, mode, Origin(path, line), nexthop))


def _check_nexthop(path: str, lines: list[str], rule: dict[str, Any],
                   line: int) -> NextHop | None:
    """The rule's nexthop (and tls_name), checked: a bad value is an error at its line."""
    tls_name = rule.get("tls_name")
    if tls_name is not None:
        where = _line_of(lines, r"^\s*tls_name\s*=", line - 1)
        if "nexthop" not in rule:
            raise PolicyError(f"{path}:{where}: tls_name applies to a nexthop; this rule has none")
        if not isinstance(tls_name, str) or not _HOST_NAME.match(tls_name.strip().lower()):
            raise PolicyError(f"{path}:{where}: tls_name {tls_name!r} must be a host name"
                              " like mail.partner.example")
    if "nexthop" not in rule:
        return None
    where = _line_of(lines, r"^\s*nexthop\s*=", line - 1)
    try:
        nexthop = parse_nexthop(rule["nexthop"])
    except ValueError as exc:
        raise PolicyError(f"{path}:{where}: nexthop {rule['nexthop']!r}: {exc}") from None
    if tls_name:
        nexthop = NextHop(nexthop.host, nexthop.port, nexthop.mx_lookup, nexthop.text,
                          tls_name.strip().lower())
    return nexthop


def parse_nexthop(value: Any) -> NextHop:
    """A NextHop from a policy value: "host" and "host:port" (the host's MX records are
    used, as Postfix does), "[host]", "[address]" and their ":port" forms (no MX look-up).
    Raises ValueError saying what is wrong."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError('expected "host", "host:port", "[address]" or "[address]:port"')
    text = value.strip()
    head, colon, rest = text.partition(":")
    if colon and head.lower() in _SMTP_TRANSPORTS:
        text_spec = rest
    elif colon and head.lower() in _OTHER_TRANSPORTS:
        raise ValueError(f"transport {head!r} is not supported (only smtp)")
    else:
        text_spec = text
    spec = text_spec.strip()
    match = _NEXTHOP.match(spec)
    if match is None:
        raise ValueError('expected "host", "host:port", "[address]" or "[address]:port"'
                         " (an IPv6 address goes in brackets)")
    bracketed = match.group("bracketed")
    host = (bracketed if bracketed is not None else match.group("host")).strip().lower()
    port_text = match.group("bport") if bracketed is not None else match.group("port")
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"port {port_text!r} must be a number from 1 to 65535")
        port = int(port_text)
    if bracketed is not None and host.startswith("ipv6:"):
        host = host[5:]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if bracketed is None:
            raise ValueError(f"an address is used as is: write [{host}]"
                             + (f":{port}" if port else ""))
        return NextHop(str(address), port, False, text)
    if re.fullmatch(r"[0-9.]+", host):
        raise ValueError(f"{host!r} is not a valid IP address")
    if not _HOST_NAME.match(host.rstrip(".")):
        raise ValueError(f"{host!r} is not a host name")
    return NextHop(host.rstrip("."), port, bracketed is None, text)


def _merge_file(policy: Policy, path: Path, errors: list[str]) -> None:
    """Merge one file into POLICY; every problem found is appended to ERRORS."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{path}:1: cannot read the file: {exc}")
        return
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"line (\d+)", str(exc))
        errors.append(f"{path}:{where.group(1) if where else 1}: {exc}")
        return
    lines = text.splitlines()
    for section in data:
        if section not in _SECTION_KEYS:
            errors.append(f"{path}:{_section_line(lines, re.escape(section))}: unknown section"
                          f" [{section}] (allowed: confidential, default, domain, rule,"
                          " policy)")
    steps: list[tuple[str, Callable[[], None]]] = [
        ("confidential",
         lambda: _merge_confidential(policy, str(path), lines, data["confidential"])),
        ("default", lambda: _merge_default(policy, str(path), lines, data["default"])),
        ("domain", lambda: _merge_domains(policy, str(path), lines, data["domain"], errors)),
        ("policy", lambda: merge_settings(policy.scan, str(path), lines, data["policy"])),
        ("rule", lambda: policy.content_rules.extend(parse_rules(
            len(policy.content_rules), str(path), lines, data["rule"], errors)))]
    for section, merge in steps:
        if section in data:
            try:
                merge()
            except PolicyError as exc:
                errors.append(str(exc))
    policy.files.append(str(path))


def _merge_default(policy: Policy, path: str, lines: list[str], table: Any) -> None:
    """Files are read in name order and a later [default] overrides an earlier one: said
    as a warning, so a drop-in silently losing (or winning) is never a surprise."""
    start = _section_line(lines, "default")
    if not isinstance(table, dict):
        raise PolicyError(f"{path}:{start}: [default] must be a table")
    _check_keys(path, lines, "default", table, start - 1)
    line = _line_of(lines, r"^\s*mode\s*=", start - 1)
    mode = _check_mode(path, line, table.get("mode"))
    origin = Origin(path, line)
    if policy.default_origin is not None:
        policy.warnings.append(
            f"{origin}: [default] mode = {mode!r} overrides mode = {policy.default_mode!r} at"
            f" {policy.default_origin} (files are read in name order; the later one wins)")
    policy.default_mode, policy.default_origin = mode, origin


def check_policy(directory: Path) -> PolicyReport:
    """Read every *.toml in DIRECTORY in name order, collecting every error and warning."""
    if not directory.is_dir():
        return PolicyReport(None, [f"{directory}: policy directory not found"], [])
    policy = Policy()
    errors: list[str] = []
    for path in sorted(directory.glob("*.toml")):
        _merge_file(policy, path, errors)
    return PolicyReport(None if errors else policy, errors, policy.warnings)


def load_policy(directory: Path) -> Policy:
    """Merge every *.toml in DIRECTORY in name order; raises PolicyError naming file:line
    of every problem (the first line is the first problem)."""
    report = check_policy(directory)
    if report.policy is None:
        raise PolicyError("\n".join(report.errors))
    return report.policy


# A field name (RFC 5322 3.6.8) and the optional white space before the colon that the
# obsolete syntax allows (RFC 5322 4.5.3): mail clients display "Subject : x" as a Subject.
_FIELD_START = re.compile(rb"([\x21-\x39\x3b-\x7e]+)([ \t]*):")
UNCERTAIN = "header section could not be parsed with certainty"


@dataclass(frozen=True)
class HeaderField:
    """One header field as written: NAME without trailing white space, the raw field
    (all its physical lines) at START:END of the header section."""

    name: str
    raw_value: bytes
    start: int
    end: int

    @functools.cached_property
    def unfolded(self) -> str:
        """Unfolded as written, neither decoded nor parsed: enough for a Message-ID in the
        log, where email's parser cost a twentieth of a listener's time."""
        text = re.sub(rb"\r?\n(?=[ \t])", b"", self.raw_value).rstrip(b"\r\n")
        return text.decode("utf-8", errors="replace")

    @functools.cached_property
    def value(self) -> str:
        """Unfolded and RFC 2047-decoded, as a mail client displays it."""
        decoded = self.unfolded
        if "=?" not in decoded and self.name.lower() not in _PARSED_FIELDS:
            # No encoded word in unstructured text: the parser would give it back as it is,
            # at several times the cost (bench/header_parse.py).
            return decoded.strip()
        return str(email.policy.default.header_factory(self.name, decoded)).strip()


# Fields whose value email.policy.default parses (addresses, dates, MIME parameters).
_PARSED_FIELDS = frozenset(
    name for name, kind in email.policy.default.header_factory.registry.items()  # type: ignore[attr-defined]
    if not issubclass(kind, email.headerregistry.UnstructuredHeader))


@dataclass
class HeaderSection:
    """Every field of a header section, read the way a lenient mail client reads it, plus
    each reason to doubt that all readers see the same fields (DOUBTS)."""

    fields: list[HeaderField] = field(default_factory=list)
    doubts: list[str] = field(default_factory=list)
    # Fields by lower-case name, for the many look-ups of one classification; rebuilt when
    # fields were added since.
    _by_name: dict[str, list[HeaderField]] = field(default_factory=dict, init=False,
                                                   repr=False, compare=False)
    _indexed: int = field(default=-1, init=False, repr=False, compare=False)

    def values(self, name: str) -> list[str]:
        return [f.value for f in self.named(name)]

    def named(self, name: str) -> list[HeaderField]:
        if self._indexed != len(self.fields):
            self._by_name = {}
            for header in self.fields:
                self._by_name.setdefault(header.name.lower(), []).append(header)
            self._indexed = len(self.fields)
        return list(self._by_name.get(name.lower(), ()))


def _physical_lines(head: bytes) -> list[tuple[int, bytes]]:
    """(offset, line with its ending) for each line of HEAD."""
    lines, offset = [], 0
    while offset < len(head):
        end = head.find(b"\n", offset)
        end = len(head) if end < 0 else end + 1
        lines.append((offset, head[offset:end]))
        offset = end
    return lines


def read_header_section(head: bytes) -> HeaderSection:
    """The fields of HEAD (a header section, up to the empty line). Colonless lines, white
    space before a colon, stray continuation lines and duplicate Subjects are recorded as
    doubts: readers disagree on them, so classification must not trust any one reading."""
    section = HeaderSection()
    current: tuple[str, int] | None = None  # name and start offset of the open field

    def close(end: int) -> None:
        if current is not None:
            name, start = current
            colon = head.index(b":", start)
            section.fields.append(HeaderField(name, head[colon + 1:end], start, end))

    for number, (offset, line) in enumerate(_physical_lines(head), start=1):
        content = line.rstrip(b"\r\n")
        if content[:1] in (b" ", b"\t"):
            if not content.strip():
                section.doubts.append(f"line {number} holds only white space"
                                      " (some readers end the header section there)")
            if current is None:
                section.doubts.append(f"line {number} continues no header field")
            continue
        close(offset)
        current = None
        match = _FIELD_START.match(content)
        if match is None:
            shown = content[:40].decode("ascii", errors="replace")
            section.doubts.append(f"line {number} is not a header field ({shown!r})")
            continue
        name = match.group(1).decode("ascii")
        if match.group(2):
            section.doubts.append(f"white space before the colon in {name!r} (obsolete syntax)")
        current = (name, offset)
    close(len(head))
    if len(section.named("Subject")) > 1:
        section.doubts.append(f"{len(section.named('Subject'))} Subject fields")
    return section


def section_of_message(headers: Message) -> HeaderSection:
    """A HeaderSection for an already parsed message (the CLI's `route`): the parser's
    defects are the doubts."""
    section = HeaderSection()
    for name, value in headers.items():
        section.fields.append(HeaderField(name, f" {value}".encode(), 0, 0))
    section.doubts = [f"{type(d).__name__}: {d}" for d in headers.defects]
    if len(section.named("Subject")) > 1:
        section.doubts.append(f"{len(section.named('Subject'))} Subject fields")
    return section


def matching_tag(policy: Policy, subject: str) -> tuple[str, Origin] | None:
    lowered = subject.lower()
    for tag, origin in policy.subject_tags:
        if tag.lower() in lowered:
            return tag, origin
    return None


def matching_header(policy: Policy, section: HeaderSection) -> tuple[HeaderField, str] | None:
    for name, accepted in policy.headers.items():
        for header in section.named(name):
            if header.value.strip().lower() in accepted:
                return header, header.value.strip()
    return None


def rule_for_domain(policy: Policy, domain: str) -> DomainRule | None:
    """The [[domain]] rule for DOMAIN: the first that matches, as for its mode."""
    domain = domain.lower().rstrip(".")
    for rule in policy.rules:
        if rule.matches(domain):
            return rule
    return None


def nexthop_for(policy: Policy, domain: str) -> NextHop | None:
    """Where mail for DOMAIN goes instead of its MX hosts (the matching rule's nexthop)."""
    rule = rule_for_domain(policy, domain)
    return rule.nexthop if rule is not None else None


def mode_for_domain(policy: Policy, domain: str) -> tuple[str, str]:
    domain = domain.lower().rstrip(".")
    for rule in policy.rules:
        if rule.matches(domain):
            return rule.mode, f"[[domain]] match = {rule.match!r} at {rule.origin}"
    origin = f" at {policy.default_origin}" if policy.default_origin else " (built-in)"
    return policy.default_mode, f"[default] mode{origin}"


def confidential_reason(policy: Policy, headers: HeaderSection | Message) -> str | None:
    """Why the message is confidential, or None. Every Subject counts (a client may show
    any of them), and a header section that readers may disagree on fails closed."""
    section = headers if isinstance(headers, HeaderSection) else section_of_message(headers)
    for subject in section.values("Subject"):
        tag = matching_tag(policy, subject)
        if tag is not None:
            return f"subject tag {tag[0]!r} ({tag[1]})"
    header = matching_header(policy, section)
    if header is not None:
        field_, value = header
        return f"header {field_.name}: {value} ({policy.header_origins[field_.name.lower()]})"
    if section.doubts:
        return f"{UNCERTAIN}: {'; '.join(section.doubts[:3])}"
    return None


NOT_CONFIDENTIAL = "mail that is not confidential: opportunistic TLS"


def decide(policy: Policy, headers: HeaderSection | Message, recipient: str, *,
           sender: str = "", content: ContentFindings | None = None) -> Decision:
    """Classify RECIPIENT of a message with HEADERS (read_header_section of its head), sent
    by SENDER (the envelope's; "" to read it from the header section), whose body scan
    found CONTENT (None: the body is not read yet, or the policy needs no body).

    In order: a subject tag or header, a header section readers may disagree on (fail
    closed), then the [[rule]]s, the first matching one deciding; a scan error is
    confidential (on_scan_error) unless a rule already made the message confidential."""
    domain = recipient.rpartition("@")[2]
    section = headers if isinstance(headers, HeaderSection) else section_of_message(headers)
    reason = confidential_reason(policy, section)
    if reason is not None:
        mode, rule = mode_for_domain(policy, domain)
        return Decision(recipient, True, reason, mode, rule)
    match = (first_match(policy.content_rules, section, sender, recipient, content)
             if policy.content_rules else None)
    if match is not None and match.rule.confidential:
        mode, rule = mode_for_domain(policy, domain)
        if match.rule.mode is not None and MODES.index(match.rule.mode) > MODES.index(mode):
            mode, rule = match.rule.mode, f"mode of {match.rule.label}"
        return Decision(recipient, True, f"{match.rule.label}: {'; '.join(match.where)}",
                        mode, rule, match.rule.name, match.where)
    if content is not None and content.errors and policy.scan.on_scan_error == "confidential":
        origin = policy.scan.origin or "the built-in default"
        mode, rule = mode_for_domain(policy, domain)
        return Decision(recipient, True, f"the content could not be scanned: {content.errors[0]}"
                        f" (on_scan_error = confidential, {origin})", mode, rule)
    if match is not None:
        return Decision(recipient, False, f"exempted by {match.rule.label}:"
                        f" {'; '.join(match.where)}", OPPORTUNISTIC, NOT_CONFIDENTIAL,
                        match.rule.name, match.where)
    why = "no confidential subject tag or header"
    if policy.content_rules:
        why += " and no [[rule]] matched"
    return Decision(recipient, False, why, OPPORTUNISTIC, NOT_CONFIDENTIAL)


def strip_subject_tags(policy: Policy, subject: str) -> str:
    for tag, _origin in policy.subject_tags:
        subject = re.sub(re.escape(tag), "", subject, flags=re.IGNORECASE)
    return re.sub(r"\s{2,}", " ", subject).strip()
