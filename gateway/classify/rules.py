"""`[[rule]]` classification rules and the `[policy]` scanning settings.

A rule's conditions must all hold (subject_regex, sender, recipient_domain, header,
body_regex, attachment_name, attachment_type, detect with min_count); it then makes the
message confidential (`confidential = true`, optionally with a `mode`) or exempts it
(`confidential = false`). Rules are tried in order and the first that matches decides. A
match says where each condition held (the Subject, a header's name, a part's number, an
attachment's name), never the text that matched: that is the sensitive data.
"""

from __future__ import annotations

import email.utils
import fnmatch
import functools
import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.classify.common import Origin, PolicyError
from gateway.classify.detectors import DETECTORS, ENCRYPTED_ATTACHMENT, TEXT_DETECTORS
from gateway.classify.needle import Needle

if TYPE_CHECKING:
    from gateway.classify.policy import HeaderSection

RULE_KEYS = {"name", "description", "confidential", "mode", "subject_regex", "sender",
             "recipient_domain", "header", "body_regex", "attachment_name", "attachment_type",
             "detect", "min_count"}
CONDITIONS = RULE_KEYS - {"name", "description", "confidential", "mode", "min_count"}
POLICY_KEYS = {"scan_limit", "on_scan_error"}
SCAN_ERROR_CHOICES = ("confidential", "ignore")
DEFAULT_SCAN_LIMIT = 1 << 20
_MODES = ("require-tls", "require-verified-tls", "pickup")
_SENDER = re.compile(r"^(\*|[^@\s*]+)@([a-z0-9-]+\.)*[a-z0-9-]+$")
_DOMAIN = re.compile(r"^(\*\.)?([a-z0-9-]+\.)*[a-z0-9-]+$")
_MIME_TYPE = re.compile(r"^[a-z0-9*][a-z0-9!#$&^_.+*-]*/[a-z0-9*][a-z0-9!#$&^_.+*-]*$")
_SIZE = re.compile(r"^\s*(\d+)\s*(|b|k|kb|kib|m|mb|mib)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1 << 20, "mb": 10**6,
               "mib": 1 << 20}
_MAX_SCAN_LIMIT = 64 << 20


@dataclass(frozen=True)
class Attachment:
    """What the body scan learned of one attachment (never its content)."""

    part: int
    filename: str
    declared: str  # Content-Type as declared, lower case
    sniffed: str | None  # the type its first bytes show
    encrypted: bool = False

    @property
    def label(self) -> str:
        name = f"attachment {self.filename!r}" if self.filename else "attachment"
        return f"{name} (part {self.part}, {self.sniffed or self.declared})"


@dataclass
class ContentFindings:
    """The outcome of a body scan: where each rule's body_regex held, how many findings each
    detector validated in which part, the attachments, and what could not be scanned."""

    regex_hits: dict[int, str] = field(default_factory=dict)  # rule index -> first part
    detector_hits: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)  # parts scanned up to scan_limit only
    parts: int = 0


@dataclass(frozen=True)
class ContentRule:
    index: int
    name: str
    origin: Origin
    confidential: bool
    mode: str | None = None
    description: str = ""
    subject_regex: re.Pattern[str] | None = None
    senders: tuple[str, ...] = ()
    recipient_domains: tuple[str, ...] = ()
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    body_regex: re.Pattern[str] | None = None
    attachment_names: tuple[str, ...] = ()
    attachment_types: tuple[str, ...] = ()
    detect: tuple[str, ...] = ()
    min_count: int = 1
    body_literals: tuple[Needle, ...] = ()  # required_literals of body_regex

    @functools.cached_property
    def needs_body(self) -> bool:
        return bool(self.body_regex or self.attachment_names or self.attachment_types
                    or self.detect)

    @property
    def label(self) -> str:
        return f"[[rule]] {self.name!r} at {self.origin}"


@dataclass(frozen=True)
class RuleMatch:
    rule: ContentRule
    where: tuple[str, ...]


@dataclass
class ScanSettings:
    scan_limit: int = DEFAULT_SCAN_LIMIT
    on_scan_error: str = "confidential"
    origin: Origin | None = None  # of on_scan_error, when a file sets it


# -- evaluation ------------------------------------------------------------------------------

def _sender_matches(patterns: Sequence[str], addresses: Sequence[str]) -> bool:
    for address in addresses:
        address = address.lower()
        domain = address.rpartition("@")[2]
        for pattern in patterns:
            if pattern.startswith("*@") and domain == pattern[2:] or address == pattern:
                return True
    return False


def _domain_matches(patterns: Sequence[str], domain: str) -> bool:
    for pattern in patterns:
        if pattern.startswith("*.") and (domain.endswith(pattern[1:]) or domain == pattern[2:]):
            return True
        if domain == pattern:
            return True
    return False


def sender_addresses(section: HeaderSection, sender: str) -> list[str]:
    """The envelope sender when there is one (mail arriving over SMTP); else, as for a file
    given to `policy test`, the Return-Path and From addresses."""
    if sender:
        return [sender]
    fields = section.named("Return-Path") or section.named("From")
    # The raw values, unfolded: getaddresses reads them at a fraction of the cost of the
    # email package's structured header parsing (an address has no encoded words).
    values = [re.sub(r"\r?\n(?=[ \t])", "", f.raw_value.decode("utf-8", "replace")).strip()
              for f in fields]
    return [address for _name, address in email.utils.getaddresses(values) if address]


def _attachment_matches(rule: ContentRule, attachment: Attachment) -> bool:
    if rule.attachment_names and not any(
            fnmatch.fnmatchcase(attachment.filename.lower(), glob)
            for glob in rule.attachment_names):
        return False
    if rule.attachment_types:
        kinds = [attachment.declared] + ([attachment.sniffed] if attachment.sniffed else [])
        if not any(fnmatch.fnmatchcase(kind, glob) for kind in kinds
                   for glob in rule.attachment_types):
            return False
    return True


def _detected(rule: ContentRule, content: ContentFindings) -> list[str] | None:
    total, where = 0, []
    for name in rule.detect:
        if name == ENCRYPTED_ATTACHMENT:
            found = [a.label for a in content.attachments if a.encrypted]
            total += len(found)
            where += [f"{name} in {label}" for label in found]
            continue
        for place, count in content.detector_hits.get(name, []):
            total += count
            where.append(f"{name} x{count} in {place}")
    return where if total >= rule.min_count else None


def rule_match(rule: ContentRule, section: HeaderSection, senders: Sequence[str],
               domain: str, content: ContentFindings | None) -> RuleMatch | None:
    """RULE's match for a message, or None: every condition must hold. Without CONTENT
    (before the body was read) a rule that needs the body does not match."""
    where: list[str] = []
    if rule.needs_body and content is None:
        return None
    if rule.subject_regex is not None:
        if not any(rule.subject_regex.search(s) for s in section.values("Subject")):
            return None
        where.append("Subject")
    if rule.senders:
        if not _sender_matches(rule.senders, senders):
            return None
        where.append("sender")
    if rule.recipient_domains:
        if not _domain_matches(rule.recipient_domains, domain):
            return None
        where.append(f"recipient domain {domain}")
    for name, accepted in rule.headers:
        fields = section.named(name)
        if not any(fnmatch.fnmatchcase(f.value.strip().lower(), glob)
                   for f in fields for glob in accepted):
            return None
        where.append(f"header {fields[0].name}")
    if content is None:
        return RuleMatch(rule, tuple(where))
    if rule.body_regex is not None:
        place = content.regex_hits.get(rule.index)
        if place is None:
            return None
        where.append(f"body_regex in {place}")
    if rule.attachment_names or rule.attachment_types:
        found = [a for a in content.attachments if _attachment_matches(rule, a)]
        if not found:
            return None
        where.append(found[0].label)
    if rule.detect:
        detected = _detected(rule, content)
        if detected is None:
            return None
        where += detected
    return RuleMatch(rule, tuple(where))


def first_match(rules: Sequence[ContentRule], section: HeaderSection, sender: str,
                recipient: str, content: ContentFindings | None) -> RuleMatch | None:
    senders = sender_addresses(section, sender) if any(r.senders for r in rules) else []
    domain = recipient.rpartition("@")[2].lower().rstrip(".")
    for rule in rules:
        match = rule_match(rule, section, senders, domain, content)
        if match is not None:
            return match
    return None


# -- regular expressions an admin writes -----------------------------------------------------

_parser: Any = importlib.import_module("re._parser")
_constants: Any = importlib.import_module("re._constants")
_BIG = 100  # a bounded repeat of this many or more backtracks like an unbounded one


def backtracking_risk(pattern: str) -> str | None:
    """Why PATTERN can take exponential time on some text (nested quantifiers, alternation
    under a quantifier), or None. Atomic groups and possessive quantifiers cannot backtrack
    and are fine."""
    c = _constants

    def walk(items: Any, under_repeat: bool) -> str | None:
        for op, av in items:
            if op in (c.MAX_REPEAT, c.MIN_REPEAT):
                low, high, sub = av
                repeats = high == c.MAXREPEAT or high >= _BIG
                if under_repeat and high > 1 and low != high:
                    return "a quantifier inside a quantified group (like (a+)+)"
                found = walk(sub, under_repeat or repeats)
            elif op == c.SUBPATTERN:
                found = walk(av[3], under_repeat)
            elif op == c.BRANCH:
                if under_repeat:
                    return "alternation inside a quantified group (like (a|ab)*)"
                found = next((r for r in (walk(b, False) for b in av[1]) if r), None)
            elif op in (c.ASSERT, c.ASSERT_NOT):
                found = walk(av[1], under_repeat)
            elif op == c.GROUPREF_EXISTS:
                found = walk(av[1], under_repeat) or (walk(av[2], under_repeat) if av[2] else None)
            else:  # literals, classes, atomic groups and possessive repeats
                found = None
            if found:
                return found
        return None

    return walk(_parser.parse(pattern), False)


def required_literals(pattern: str) -> frozenset[str] | None:
    """Lower-case strings one of which every match of PATTERN contains, or None when there
    is no such set. A text (lower-cased) holding none of them cannot match: the regular
    expression need not run. Only sound for ASCII text (see BodyScan._scan_text)."""
    c = _constants

    def of(items: Any) -> frozenset[str] | None:
        best: frozenset[str] | None = None
        run = ""

        def better(candidate: frozenset[str] | None) -> None:
            nonlocal best
            if candidate and (best is None or min(map(len, candidate)) > min(map(len, best))):
                best = candidate

        for op, av in items:
            if op == c.LITERAL:
                run += chr(av).lower()
                continue
            better(frozenset([run]) if run else None)
            run = ""
            if op == c.SUBPATTERN:
                better(of(av[3]))
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) and av[0] >= 1:
                better(of(av[2]))
            elif op == c.ATOMIC_GROUP:
                better(of(av))
            elif op == c.BRANCH:
                alternatives = [of(b) for b in av[1]]
                if all(alternatives):
                    better(frozenset().union(*(a for a in alternatives if a)))
        better(frozenset([run]) if run else None)
        return best

    try:
        return of(_parser.parse(pattern))
    except Exception:  # noqa: BLE001 - no prefilter then; the pattern still runs
        return None


def compile_regex(value: Any, where: str, key: str) -> re.Pattern[str]:
    if not isinstance(value, str) or not value:
        raise PolicyError(f"{where}: {key} must be a non-empty string (a regular expression)")
    try:
        compiled = re.compile(value)
    except re.error as exc:
        raise PolicyError(f"{where}: {key} {value!r} is not a valid regular expression:"
                          f" {exc}") from None
    risk = backtracking_risk(value)
    if risk is not None:
        raise PolicyError(f"{where}: {key} {value!r} is refused: {risk} can take exponential"
                          " time on some messages; rewrite it, or use an atomic group (?>...)"
                          " or a possessive quantifier (++, *+)")
    return compiled


# -- loading ---------------------------------------------------------------------------------

def _line_of(lines: list[str], pattern: str, start: int) -> int:
    regex = re.compile(pattern)
    for number in range(start, len(lines)):
        if regex.search(lines[number]):
            return number + 1
    return start + 1 if start < len(lines) else 1


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(
            isinstance(v, str) and v.strip() for v in values):
        raise PolicyError(f"{where}: {key} must be a non-empty string or list of strings")
    return tuple(v.strip().lower() for v in values)


def parse_rule(index: int, path: str, lines: list[str], table: Any, line: int) -> ContentRule:
    """One [[rule]] table starting at LINE (1-based) of PATH; PolicyError at the key's line."""
    if not isinstance(table, dict):
        raise PolicyError(f"{path}:{line}: [[rule]] must be a table")

    def at(key: str) -> str:
        pattern = r'^\s*"?' + re.escape(key) + r'"?\s*[=.]'
        return f"{path}:{_line_of(lines, pattern, line - 1)}"

    for key in table:
        if key not in RULE_KEYS:
            raise PolicyError(f"{at(key)}: unknown key {key!r} in [[rule]]"
                              f" (allowed: {', '.join(sorted(RULE_KEYS))})")
    name = table.get("name", f"rule {index + 1}")
    if not isinstance(name, str) or not name.strip():
        raise PolicyError(f"{at('name')}: name must be a non-empty string")
    if not CONDITIONS & table.keys():
        raise PolicyError(f"{path}:{line}: [[rule]] {name!r} has no condition (one of"
                          f" {', '.join(sorted(CONDITIONS))})")
    confidential = table.get("confidential")
    if not isinstance(confidential, bool):
        raise PolicyError(f"{at('confidential') if 'confidential' in table else f'{path}:{line}'}:"
                          f" [[rule]] {name!r} needs confidential = true or false")
    mode = table.get("mode")
    if mode is not None:
        if not confidential:
            raise PolicyError(f"{at('mode')}: mode applies to confidential = true rules")
        if mode not in _MODES:
            raise PolicyError(f"{at('mode')}: mode {mode!r} is not one of {', '.join(_MODES)}")
    fields: dict[str, Any] = {}
    if "subject_regex" in table:
        fields["subject_regex"] = compile_regex(table["subject_regex"], at("subject_regex"),
                                                "subject_regex")
    if "body_regex" in table:
        fields["body_regex"] = compile_regex(table["body_regex"], at("body_regex"), "body_regex")
        literals = required_literals(table["body_regex"])
        fields["body_literals"] = tuple(Needle(x) for x in sorted(literals or ()))
    if "sender" in table:
        senders = _strings(table["sender"], at("sender"), "sender")
        for sender in senders:
            if not _SENDER.match(sender):
                raise PolicyError(f"{at('sender')}: sender {sender!r} must be an address or"
                                  " *@domain")
        fields["senders"] = senders
    if "recipient_domain" in table:
        domains = _strings(table["recipient_domain"], at("recipient_domain"), "recipient_domain")
        for domain in domains:
            if not _DOMAIN.match(domain):
                raise PolicyError(f"{at('recipient_domain')}: {domain!r} must be a domain like"
                                  " example.org or *.example.org")
        fields["recipient_domains"] = domains
    if "header" in table:
        headers = table["header"]
        if not isinstance(headers, dict) or not headers:
            raise PolicyError(f"{at('header')}: header must be a table of Name = [values]")
        fields["headers"] = tuple((str(n), _strings(v, at("header"), f"header {n!r}"))
                                  for n, v in headers.items())
    if "attachment_name" in table:
        fields["attachment_names"] = _strings(table["attachment_name"], at("attachment_name"),
                                              "attachment_name")
    if "attachment_type" in table:
        kinds = _strings(table["attachment_type"], at("attachment_type"), "attachment_type")
        for kind in kinds:
            if not _MIME_TYPE.match(kind):
                raise PolicyError(f"{at('attachment_type')}: {kind!r} is not a MIME type like"
                                  " application/pdf or image/*")
        fields["attachment_types"] = kinds
    if "detect" in table:
        detect = _strings(table["detect"], at("detect"), "detect")
        for detector in detect:
            if detector not in DETECTORS:
                raise PolicyError(f"{at('detect')}: unknown detector {detector!r} (built in:"
                                  f" {', '.join(DETECTORS)})")
        fields["detect"] = detect
    if "min_count" in table:
        count = table["min_count"]
        if "detect" not in table:
            raise PolicyError(f"{at('min_count')}: min_count applies to detect")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise PolicyError(f"{at('min_count')}: min_count must be a whole number from 1")
        fields["min_count"] = count
    description = table.get("description", "")
    if not isinstance(description, str):
        raise PolicyError(f"{at('description')}: description must be a string")
    return ContentRule(index, name.strip(), Origin(path, line), confidential, mode,
                       description, **fields)


def parse_rules(start_index: int, path: str, lines: list[str], rules: Any,
                errors: list[str]) -> list[ContentRule]:
    if not isinstance(rules, list):
        return _error(errors, f"{path}:1: [[rule]] must be an array of tables")
    parsed: list[ContentRule] = []
    line = 0
    for table in rules:
        line = _line_of(lines, r"^\s*\[\[\s*rule\s*\]\]", line)
        try:
            parsed.append(parse_rule(start_index + len(parsed), path, lines, table, line))
        except PolicyError as exc:
            errors.append(str(exc))
    return parsed


def _error(errors: list[str], message: str) -> list[ContentRule]:
    errors.append(message)
    return []


def parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("expected a number of bytes, or like \"512KiB\" or \"1MiB\"")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def merge_settings(settings: ScanSettings, path: str, lines: list[str], table: Any) -> None:
    start = _line_of(lines, r"^\s*\[\s*policy\s*\]", 0)
    if not isinstance(table, dict):
        raise PolicyError(f"{path}:{start}: [policy] must be a table")
    for key in table:
        if key not in POLICY_KEYS:
            where = _line_of(lines, rf"^\s*{re.escape(key)}\s*=", start - 1)
            raise PolicyError(f"{path}:{where}: unknown key {key!r} in [policy] (allowed:"
                              f" {', '.join(sorted(POLICY_KEYS))})")
    if "scan_limit" in table:
        where = _line_of(lines, r"^\s*scan_limit\s*=", start - 1)
        try:
            limit = parse_size(table["scan_limit"])
        except ValueError as exc:
            raise PolicyError(f"{path}:{where}: scan_limit: {exc}") from None
        if not 1024 <= limit <= _MAX_SCAN_LIMIT:
            raise PolicyError(f"{path}:{where}: scan_limit must be from 1KiB to 64MiB")
        settings.scan_limit = limit
    if "on_scan_error" in table:
        where = _line_of(lines, r"^\s*on_scan_error\s*=", start - 1)
        if table["on_scan_error"] not in SCAN_ERROR_CHOICES:
            raise PolicyError(f"{path}:{where}: on_scan_error must be one of"
                              f" {', '.join(SCAN_ERROR_CHOICES)}")
        settings.on_scan_error = table["on_scan_error"]
        settings.origin = Origin(path, where)


def text_detectors(rules: Sequence[ContentRule]) -> list[str]:
    return sorted({d for r in rules for d in r.detect if d in TEXT_DETECTORS})
