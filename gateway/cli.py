"""The `sealgate` command line (see DESIGN.md, "Command line")."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.parser
import email.policy
import getpass
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.classify.policy import PolicyError, check_policy, decide, load_policy
from gateway.config import Config, ConfigError, load_config, parse_duration
from gateway.delivery.mx import make_resolver
from gateway.diagnostics.route import (
    cached_knowledge,
    dane_status,
    describe,
    policy_nexthop,
    predicted_outcome,
    tls_required_note,
    with_requiretls,
)
from gateway.ops.config_check import check_config
from gateway.ops.logs import configure as configure_logging
from gateway.storage import open_storage, storage_errors
from gateway.storage.protocols import MessageStatus, PickupStore, QueueInspection, Storage
from gateway.tls.knowledge import TLSCache
from gateway.tls.mta_sts import cache_status
from gateway.tlsrpt.command import cmd_tlsrpt
from gateway.vault.expiry import Retention, forget_stale_hosts, prune_history, purge
from gateway.vault.key_report import format_key_rows, key_rows

if TYPE_CHECKING:
    from gateway.diagnostics.probe import ProbeReport  # imported by cmd_probe when it runs

CONFIG_HELP = "config file (default: $SEALGATE_CONFIG, then conf/sealgate.toml)"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@contextlib.contextmanager
def opened_store(config: Config) -> Iterator[Storage]:
    store = open_storage(config)
    try:
        yield store
    finally:
        store.close()


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from gateway import event_loop
    from gateway.serve import serve

    event_loop.run(serve(config))
    return 0


def _route_headers(args: argparse.Namespace) -> Message:
    if args.message:
        with open(args.message, "rb") as handle:
            return email.parser.BytesHeaderParser(policy=email.policy.default).parse(handle)
    lines = [f"From: {args.sender}", f"To: {args.to}"]
    if args.subject is not None:
        lines.append(f"Subject: {args.subject}")
    for header in args.header:
        if ":" not in header:
            raise ValueError(f"--header {header!r}: expected 'Name: value'")
        lines.append(header)
    return email.parser.Parser(policy=email.policy.default).parsestr("\n".join(lines) + "\n\n")


def cmd_route(config: Config, args: argparse.Namespace) -> int:
    policy = load_policy(config.policy_dir)
    if args.message and policy.needs_body:  # the body too, as the SMTP side scans it
        from gateway.classify.message import classify, file_chunks

        decision = classify(policy, file_chunks(Path(args.message)), [args.to],
                            args.sender)[0]
    else:
        decision = decide(policy, _route_headers(args), args.to, sender=args.sender)
    if args.requiretls:
        decision = with_requiretls(decision)
    tls_required_no = any(str(v).strip().lower() == "no"
                          for v in _route_headers(args).get_all("TLS-Required") or [])
    note = tls_required_note(decision, args.requiretls, tls_required_no)
    knowledge = _domain_knowledge(config, decision.recipient.rpartition("@")[2], args.no_dns)
    outcome = predicted_outcome(decision, knowledge)
    if args.json:
        print(json.dumps({"from": args.sender, **decision.as_dict(), "domain": knowledge,
                          "outcome": outcome, "requiretls": args.requiretls,
                          "tls_required": note}, indent=2))
        return 0
    print(f"from:         {args.sender}")
    print(f"to:           {decision.recipient}")
    print(f"confidential: {'yes' if decision.confidential else 'no'} ({decision.why})")
    print(f"mode:         {decision.mode}")
    print(f"rule:         {decision.rule}")
    if note:
        print(f"{'requiretls:' if args.requiretls else 'tls-required:':<14}{note}")
    print("\n".join(describe(knowledge)))
    print(f"outcome:      {outcome}")
    return 0


def _domain_knowledge(config: Config, domain: str, offline: bool) -> dict[str, Any]:
    with opened_store(config) as store:
        knowledge = cached_knowledge(config, store, domain)
    if not offline:
        knowledge["dane"] = asyncio.run(dane_status(config, domain))
    return knowledge


def cmd_probe(config: Config, args: argparse.Namespace) -> int:
    from gateway.diagnostics.probe import format_report, probe

    resolver = make_resolver(config.dns.nameservers, parse_duration(config.dns.timeout))
    nexthop, rule = policy_nexthop(config, args.domain.strip().rstrip(".").lower()) or (None, "")
    report = asyncio.run(probe(args.domain, resolver=resolver, port=config.delivery.port,
                               ca_file=config.delivery.ca_file,
                               https_port=config.delivery.mta_sts_port,
                               helo_name=config.smtp.hostname, nexthop=nexthop,
                               nexthop_rule=rule,
                               dnssec_names=(config.dns.dnssec_check_signed,
                                             config.dns.dnssec_check_bogus)))
    _remember_probe(config, report)
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report))
    return 0


def _remember_probe(config: Config, report: ProbeReport) -> None:
    """What the probe saw goes into the TLS cache, as a delivery's findings would; what the
    MTA-STS cache holds for the domain goes into the report."""
    with opened_store(config) as store:
        report.sts_cache = cache_status(store, report.domain, store.clock())
        cache = TLSCache(store, parse_duration(config.delivery.tls_cache_ttl))
        for host in report.hosts:
            if host.connected and host.starttls_offered is not None:
                cache.record(report.domain, host.name, host.starttls_offered,
                             bool(host.pkix_verified), f"probe: {host.tls_version or 'no TLS'}")


def cmd_tls_forget(config: Config, args: argparse.Namespace) -> int:
    """Forget a host's TLS memory (downgrade detection, TLS cache) after a legitimate change."""
    host = args.host.strip().rstrip(".").lower()
    if not host or any(c.isspace() or c in "@/[]" for c in host):
        raise ValueError(f"{args.host!r} is not an MX host name like mx.example.org")
    with opened_store(config) as store:
        known = store.forget_host(host)
    if not known:
        print(f"sealgate: nothing is known about {host}'s TLS (no delivery or probe reached it;"
              " `sealgate route` lists the hosts known for a domain)", file=sys.stderr)
        return 1
    print(f"forgot what deliveries learned about {host}'s TLS: its next session is judged"
          " afresh")
    return 0


def cmd_policy_check(config: Config, args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else config.policy_dir
    report = check_policy(directory)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for problem in report.errors:
            print(f"error: {problem}", file=sys.stderr)
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if report.policy is not None:
            policy = report.policy
            print(f"{directory}: OK ({len(policy.files)} files, {len(policy.rules)} domain rules,"
                  f" {len(policy.content_rules)} classification rules,"
                  f" default mode {policy.default_mode})")
        else:
            print(f"{directory}: {len(report.errors)} error(s); the policy cannot be used",
                  file=sys.stderr)
    return 0 if report.policy is not None else 1


def cmd_policy_test(config: Config, args: argparse.Namespace) -> int:
    """Classify every .eml file named (or found in the folders named) and print, per file and
    recipient, the decision, the rule and where it matched; with --expect, the mismatches."""
    from gateway.classify.policy_test import print_results, run_policy_test

    directory = Path(args.policy) if args.policy else config.policy_dir
    report = run_policy_test(load_policy(directory), [Path(p) for p in args.paths],
                             Path(args.expect) if args.expect else None, args.to)
    print_results(report, args.json)
    return 0 if report.ok else 1


def cmd_config_check(args: argparse.Namespace) -> int:
    """Before main() loads the config: every problem of a broken file is reported."""
    report = check_config(getattr(args, "config", None))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0 if report.ok else 1
    for problem in report.errors:
        print(f"error: {problem}", file=sys.stderr)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.ok:
        print(f"{report.file}: OK")
    else:
        print(f"{report.file}: {len(report.errors)} error(s)", file=sys.stderr)
    return 0 if report.ok else 1


def cmd_purge(config: Config, args: argparse.Namespace) -> int:
    with opened_store(config) as store:
        destroyed, keys = purge(store)
        print(f"destroyed {destroyed} expired messages")
        print(f"destroyed {len(keys)} key-encryption keys that wrapped nothing else"
              + (f": {', '.join(keys)}" if keys else ""))
        if (destroyed or keys) and config.storage.backend == "postgresql":
            # Deleted rows keep their bytes in the tables' pages until VACUUM reuses them.
            from gateway.storage.postgres import PostgresStorage

            if isinstance(store, PostgresStorage):
                store.vacuum()
                print("vacuumed the pickups, blob_chunks and key tables")
        print(f"forgot {store.forget_expired_sender_links()} sender links of expired messages")
        retention = Retention.of(config.delivery)
        print(f"forgot {prune_history(store, retention.history)} settled messages older than"
              f" {config.delivery.history_retention} (delivery.history_retention)")
        print(f"forgot {forget_stale_hosts(store, retention.host_knowledge)} TLS facts of hosts"
              " not seen within delivery.tls_cache_ttl and delivery.downgrade_window")
    return 0


def cmd_queue(config: Config, args: argparse.Namespace) -> int:
    with opened_store(config) as store:
        return _queue(store, args)


def _queue(store: Storage, args: argparse.Namespace) -> int:
    if args.action == "list":
        return _queue_list(store, args.json)
    if args.action == "show":
        return _queue_show(store, args.id, args.json)
    if args.action == "flush":
        print(f"{store.flush()} recipients due now")
    elif args.action == "delete":
        if not store.delete_message(args.id):
            print(f"no such message: {args.id}", file=sys.stderr)
            return 1
        store.audit(args.id, "queue-deleted", admin_identity(),
                    "deleted with sealgate queue delete")
        print(f"deleted {args.id}")
    return 0


def _queue_list(store: QueueInspection, as_json: bool) -> int:
    rows = [asdict(r) for r in store.waiting_recipients()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['message_id']}  {_when(r['received'])}  {r['sender'] or '<>'} -> {r['rcpt']}"
              f"  {r['state']}  next {_when(r['next_attempt'])}  {r['last_reply']}")
    print(f"{len(rows)} recipients waiting" if rows else "the queue is empty")
    return 0


def _queue_show(store: QueueInspection, queue_id: str, as_json: bool) -> int:
    status = store.queued_message(queue_id)
    if status is None:
        print(f"no such message: {queue_id}", file=sys.stderr)
        return 1
    message, recipients = _message_dicts(status)
    if as_json:
        print(json.dumps({"message": message, "recipients": recipients}, indent=2, default=str))
        return 0
    print("\n".join(describe_queued_message(message, recipients)))
    return 0


def _message_dicts(status: MessageStatus) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The message and its recipients (each with its attempt_history) as JSON objects."""
    message = asdict(status)
    recipients: list[dict[str, Any]] = message.pop("recipients")
    return message, recipients


def describe_queued_message(message: dict[str, Any],
                            recipients: list[dict[str, Any]]) -> list[str]:
    client = message["client"] or "Sealgate itself"
    lines = [f"message {message['id']}",
             f"  from      {message['sender'] or '<> (null sender)'}",
             f"  received  {_when(message['received'])} from {client}",
             f"  size      {message['size']} bytes"]
    if message.get("requiretls"):
        lines.append("  tls       REQUIRETLS (RFC 8689): relayed only with it, else pickup")
    if message.get("tls_optional"):
        lines.append("  tls       TLS-Required: No: MTA-STS and DANE not applied (ordinary mail)")
    for rcpt in recipients:
        confidential = "confidential" if rcpt["confidential"] else "not confidential"
        lines += ["", f"  to {rcpt['rcpt']}: {rcpt['state']} ({confidential}, mode {rcpt['mode']})",
                  f"    why       {rcpt['reason'] or '-'}",
                  f"    attempts  {rcpt['attempts']}, next {_when(rcpt['next_attempt'])}"
                  if rcpt["state"] in ("queued", "deferred") else
                  f"    attempts  {rcpt['attempts']}",
                  f"    last      {rcpt['last_reply'] or '-'}"]
        history = rcpt["attempt_history"]
        if not history:
            lines.append("    no delivery attempt yet")
        for attempt in history:
            lines += describe_attempt(attempt)
    return lines


def describe_attempt(attempt: dict[str, Any]) -> list[str]:
    where = attempt["host"] or "-"
    if attempt["address"]:
        where += f" [{attempt['address']}]"
    tls = "no TLS"
    if attempt["tls_version"]:
        tls = f"{attempt['tls_version']} {attempt['cipher'] or ''}".strip()
        tls += ", verified" if attempt["verified"] else ", not verified"
    lines = [f"    - {_when(attempt['at'])}  {where}",
             f"        tls       {tls}"]
    if attempt["cert_subject"]:
        lines.append(f"        cert      {attempt['cert_subject']}"
                     f" (issuer {attempt['cert_issuer']})")
    if attempt["reason"]:
        lines.append(f"        verdict   {attempt['reason']}")
    lines.append(f"        reply     {attempt['reply'] or '-'}")
    return lines


def admin_identity() -> str:
    """Who ran an admin command, for the audit trail: the login behind sudo, if any."""
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"admin:{user}@{socket.gethostname()}"


def cmd_keys(config: Config, args: argparse.Namespace) -> int:
    """On PostgreSQL the keys every node shares, in the database; on SQLite the files."""
    with opened_store(config) as store:
        if args.action == "list":
            rows = key_rows(store, store.clock())
            print(json.dumps(rows, indent=2) if args.json else format_key_rows(rows))
            return 0
        generation = store.rotate_keys()
    print(f"key generation {generation}: messages stored from now on get new epoch keys;"
          " the current keys still decrypt what they wrapped and are destroyed when it has"
          " expired")
    return 0


def cmd_pickup(config: Config, args: argparse.Namespace) -> int:
    with opened_store(config) as store:
        return _pickup(store, args)


def _pickup(store: Storage, args: argparse.Namespace) -> int:
    if args.action == "list":
        return _pickup_list(store, args.recipient, args.json)
    if args.action == "revoke":
        destroyed = store.destroy_conversation(args.id)
        if not destroyed:
            print(f"no such stored message: {args.id}", file=sys.stderr)
            return 1
        store.audit(args.id, "revoked", admin_identity(),
                    f"destroyed with sealgate pickup revoke ({destroyed} stored messages)")
        print(f"destroyed {args.id} ({destroyed} stored messages including replies)")
        return 0
    rows = [asdict(event) for event in store.audit_events(args.id)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0 if rows else 1
    if not rows:
        print(f"no audit events for {args.id}", file=sys.stderr)
        return 1
    for r in rows:
        print(f"{_when(r['at'])}  {r['event']}  {r['client']}  {r['detail']}")
    return 0


def _pickup_list(store: PickupStore, recipient: str | None, as_json: bool) -> int:
    pickups = store.list_pickups(recipient)
    senders = {p.id: p.sender for p in pickups}
    entries: list[dict[str, Any]] = []
    for p in pickups:
        entry = {"id": p.id, "kind": p.kind, "sender": p.sender, "recipient": p.recipient,
                 "state": p.state, "created": p.created, "expires": p.expires}
        if p.kind == "reply":
            # A reply is stored in its author's thread: its author is the thread's recipient,
            # and it went to the sender of the message it answers.
            entry.update(state="reply", thread_id=p.thread_id, sender=p.recipient,
                         recipient=senders.get(p.thread_id or "", "the original sender"))
        entries.append(entry)
    if as_json:
        print(json.dumps(entries, indent=2))
        return 0
    for e in entries:
        label = f"reply to {e['thread_id']}" if e["kind"] == "reply" else e["state"]
        print(f"{e['id']}  {e['sender']} -> {e['recipient']}  {label}"
              f"  expires {_when(e['expires'])}")
    if not entries:
        print(f"no stored messages{' for ' + recipient if recipient else ''}")
    return 0


def _common_options() -> argparse.ArgumentParser:
    """--config is accepted after any sub-command too (DESIGN.md, "Command line")."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
    return common


def _why_unwritable(directory: Path) -> str:
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return f" ({directory} is on a read-only filesystem)"
    except OSError:
        return ""
    return "" if os.access(directory, os.W_OK) else f" ({directory} is not writable by this user)"


def parser() -> argparse.ArgumentParser:
    common = _common_options()

    def add(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
            **kwargs: Any) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, parents=[common], **kwargs)

    top = argparse.ArgumentParser(prog="sealgate",
                                  description="SMTP gateway with TLS-aware routing")
    top.add_argument("--config", help=CONFIG_HELP)
    sub = top.add_subparsers(dest="command", required=True)
    add(sub, "serve", help="run SMTP, delivery, portal and expiry").set_defaults(func=cmd_serve)
    route = add(sub, "route", help="explain the routing decision for a message")
    route.add_argument("--from", dest="sender", required=True)
    route.add_argument("--to", required=True)
    route.add_argument("--subject")
    route.add_argument("--header", action="append", default=[])
    route.add_argument("--message", help="an RFC 5322 file whose headers are used")
    route.add_argument("--json", action="store_true")
    route.add_argument("--no-dns", action="store_true", help="skip the live DANE look-up")
    route.add_argument("--requiretls", action="store_true",
                       help="as sent with MAIL FROM:<...> REQUIRETLS (RFC 8689)")
    route.set_defaults(func=cmd_route)
    probe = add(sub, "probe", help="what a domain's MX hosts offer, and the route per mode")
    probe.add_argument("domain")
    probe.add_argument("--json", action="store_true")
    probe.set_defaults(func=cmd_probe)
    policy = add(sub, "policy", help="policy tools").add_subparsers(dest="action", required=True)
    check = add(policy, "check", help="validate policy files, every error with file:line")
    check.add_argument("dir", nargs="?")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_policy_check)
    test = add(policy, "test", help="classify .eml files with the policy (and check expectations)")
    test.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    test.add_argument("--json", action="store_true")
    test.add_argument("--expect", metavar="FILE.csv",
                      help="expected results: columns file, confidential (yes/no), rule")
    test.add_argument("--to", action="append", default=[],
                      help="recipient (default: the To/Cc addresses of each message)")
    test.add_argument("--policy", metavar="DIR", help="policy directory (default: policy.dir)")
    test.set_defaults(func=cmd_policy_test)
    config_tools = add(sub, "config", help="config tools").add_subparsers(dest="action",
                                                                          required=True)
    config_check = add(config_tools, "check", help="validate the config file")
    config_check.add_argument("--json", action="store_true")
    config_check.set_defaults(func=cmd_config_check)
    add(sub, "purge", help="destroy expired stored messages now").set_defaults(func=cmd_purge)
    tls = add(sub, "tls", help="what deliveries learned about MX hosts' TLS")
    tls_actions = tls.add_subparsers(dest="action", required=True)
    forget = add(tls_actions, "forget", help="forget a host's TLS memory after a legitimate"
                 " change (ends its downgrade)")
    forget.add_argument("host")
    forget.set_defaults(func=cmd_tls_forget)
    queue = add(sub, "queue", help="inspect the queue")
    queue_actions = queue.add_subparsers(dest="action", required=True)
    add(queue_actions, "list").add_argument("--json", action="store_true")
    add(queue_actions, "flush")
    show = add(queue_actions, "show", help="a message with every delivery attempt")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    add(queue_actions, "delete").add_argument("id")
    queue.set_defaults(func=cmd_queue)
    keys = add(sub, "keys", help="key-encryption keys").add_subparsers(dest="action", required=True)
    add(keys, "rotate", help="new epoch keys for messages stored from now on"
        ).set_defaults(func=cmd_keys)
    key_list = add(keys, "list", help="epochs, their message counts and destruction dates")
    key_list.add_argument("--json", action="store_true")
    key_list.set_defaults(func=cmd_keys)
    pickup = add(sub, "pickup", help="stored messages")
    pickup_actions = pickup.add_subparsers(dest="action", required=True)
    listing = add(pickup_actions, "list")
    listing.add_argument("--recipient")
    listing.add_argument("--json", action="store_true")
    add(pickup_actions, "revoke").add_argument("id")
    audit = add(pickup_actions, "audit")
    audit.add_argument("id")
    audit.add_argument("--json", action="store_true")
    pickup.set_defaults(func=cmd_pickup)
    tlsrpt = add(sub, "tlsrpt", help="TLS reports (RFC 8460)").add_subparsers(dest="action",
                                                                              required=True)
    send = add(tlsrpt, "send", help="send the TLS reports that are due now")
    send.add_argument("--json", action="store_true")
    send.set_defaults(func=cmd_tlsrpt)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "config":  # it checks every key itself, of a broken file too
        return cmd_config_check(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO
    try:
        config = load_config(getattr(args, "config", None))
    except (ConfigError, OSError) as exc:
        print(f"sealgate: {exc}", file=sys.stderr)
        return 1
    configure_logging(config.log.format)
    try:
        return int(args.func(config, args))
    except storage_errors() as exc:
        if config.storage.backend == "postgresql":
            print(f"sealgate: storage.url: the database cannot be used: {exc}", file=sys.stderr)
            return 1
        print(f"sealgate: storage.dir: the database {config.storage_dir / 'sealgate.db'} cannot be"
              f" used: {exc}{_why_unwritable(config.storage_dir)}", file=sys.stderr)
        return 1
    except (ConfigError, PolicyError, ValueError, OSError) as exc:
        print(f"sealgate: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
