"""The `sealgate` command line (see DESIGN.md, "Command line")."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.parser
import email.policy
import json
import logging
import sys
from datetime import datetime, timezone
from email.message import Message
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from gateway.config import Config, ConfigError, load_config, parse_duration
from gateway.crypto import KeyRing
from gateway.dns import make_resolver
from gateway.expiry import purge_expired
from gateway.policy import PolicyError, decide, load_policy
from gateway.route_context import cached_knowledge, dane_status, describe
from gateway.store import Store, open_store
from gateway.tls_cache import TLSCache


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@contextlib.contextmanager
def opened_store(config: Config) -> Iterator[Store]:
    store = open_store(config.storage_dir)
    try:
        yield store
    finally:
        store.close()


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from gateway.serve import serve

    asyncio.run(serve(config))
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
    decision = decide(policy, _route_headers(args), args.to)
    knowledge = _domain_knowledge(config, decision.recipient.rpartition("@")[2], args.no_dns)
    if args.json:
        print(json.dumps({"from": args.sender, **decision.as_dict(), "domain": knowledge}, indent=2))
        return 0
    print(f"from:         {args.sender}")
    print(f"to:           {decision.recipient}")
    print(f"confidential: {'yes' if decision.confidential else 'no'} ({decision.why})")
    print(f"mode:         {decision.mode}")
    print(f"rule:         {decision.rule}")
    print("\n".join(describe(knowledge)))
    return 0


def _domain_knowledge(config: Config, domain: str, offline: bool) -> dict[str, Any]:
    with opened_store(config) as store:
        knowledge = cached_knowledge(config, store, domain)
    if not offline:
        knowledge["dane"] = asyncio.run(dane_status(config, domain))
    return knowledge


def cmd_probe(config: Config, args: argparse.Namespace) -> int:
    from gateway.probe import format_report, probe

    resolver = make_resolver(config.dns.nameservers, parse_duration(config.dns.timeout))
    report = asyncio.run(probe(args.domain, resolver=resolver, port=config.delivery.port,
                               ca_file=config.delivery.ca_file,
                               https_port=config.delivery.mta_sts_port,
                               helo_name=config.smtp.hostname))
    _remember_probe(config, report)
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report))
    return 0


def _remember_probe(config: Config, report: Any) -> None:
    """What the probe saw goes into the TLS cache, as a delivery's findings would."""
    with opened_store(config) as store:
        cache = TLSCache(store, parse_duration(config.delivery.tls_cache_ttl))
        for host in report.hosts:
            if host.connected and host.starttls_offered is not None:
                cache.record(report.domain, host.name, host.starttls_offered,
                             bool(host.pkix_verified), f"probe: {host.tls_version or 'no TLS'}")


def cmd_policy_check(config: Config, args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else config.policy_dir
    policy = load_policy(directory)
    print(f"{directory}: OK ({len(policy.files)} files, {len(policy.rules)} domain rules,"
          f" default mode {policy.default_mode})")
    return 0


def cmd_purge(config: Config, args: argparse.Namespace) -> int:
    with opened_store(config) as store:
        print(f"destroyed {purge_expired(store)} expired messages")
    return 0


def cmd_queue(config: Config, args: argparse.Namespace) -> int:
    with opened_store(config) as store:
        return _queue(store, args)


def _queue(store: Store, args: argparse.Namespace) -> int:
    if args.action == "list":
        rows = store.query("SELECT r.*, m.sender, m.received FROM recipients r JOIN messages m"
                           " ON m.id=r.message_id WHERE r.state IN ('queued','deferred','delivering')"
                           " ORDER BY m.received")
        for r in rows:
            print(f"{r['message_id']}  {_when(r['received'])}  {r['sender'] or '<>'} -> {r['rcpt']}"
                  f"  {r['state']}  next {_when(r['next_attempt'])}  {r['last_reply']}")
        print(f"{len(rows)} recipients waiting")
    elif args.action == "show":
        rows = store.query("SELECT * FROM recipients WHERE message_id=?", (args.id,))
        if not rows:
            print(f"no such message: {args.id}", file=sys.stderr)
            return 1
        for r in rows:
            print(json.dumps({k: r[k] for k in r.keys()}, default=str))
    elif args.action == "flush":
        print(f"{store.flush()} recipients due now")
    elif args.action == "delete":
        if not store.delete_message(args.id):
            print(f"no such message: {args.id}", file=sys.stderr)
            return 1
        print(f"deleted {args.id}")
    return 0


def cmd_keys(config: Config, args: argparse.Namespace) -> int:
    ring = KeyRing(config.storage_dir / "keys")
    print(f"new key-encryption key {ring.rotate()}; older keys still decrypt: {', '.join(ring.key_ids())}")
    return 0


def cmd_pickup(config: Config, args: argparse.Namespace) -> int:
    with opened_store(config) as store:
        return _pickup(store, args)


def _pickup(store: Store, args: argparse.Namespace) -> int:
    if args.action == "list":
        for p in store.list_pickups(args.recipient):
            kind = f"reply to {p.thread_id}" if p.kind == "reply" else p.state
            print(f"{p.id}  {p.sender} -> {p.recipient}  {kind}  expires {_when(p.expires)}")
    elif args.action == "revoke":
        destroyed = store.destroy_conversation(args.id)
        if not destroyed:
            print(f"no such stored message: {args.id}", file=sys.stderr)
            return 1
        print(f"destroyed {args.id} ({destroyed} stored messages including replies)")
    elif args.action == "audit":
        rows = store.query("SELECT * FROM audit WHERE pickup_id=? ORDER BY at", (args.id,))
        if not rows:
            print(f"no audit events for {args.id}", file=sys.stderr)
            return 1
        for r in rows:
            print(f"{_when(r['at'])}  {r['event']}  {r['client']}  {r['detail']}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sealgate", description="SMTP gateway with TLS-aware routing")
    top.add_argument("--config", help="config file (default: $SEALGATE_CONFIG, then conf/sealgate.toml)")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run SMTP, delivery, portal and expiry").set_defaults(func=cmd_serve)
    route = sub.add_parser("route", help="explain the routing decision for a message")
    route.add_argument("--from", dest="sender", required=True)
    route.add_argument("--to", required=True)
    route.add_argument("--subject")
    route.add_argument("--header", action="append", default=[])
    route.add_argument("--message", help="an RFC 5322 file whose headers are used")
    route.add_argument("--json", action="store_true")
    route.add_argument("--no-dns", action="store_true", help="skip the live DANE look-up")
    route.set_defaults(func=cmd_route)
    probe = sub.add_parser("probe", help="what a domain's MX hosts offer, and the route per mode")
    probe.add_argument("domain")
    probe.add_argument("--json", action="store_true")
    probe.set_defaults(func=cmd_probe)
    policy = sub.add_parser("policy", help="policy tools").add_subparsers(dest="action", required=True)
    check = policy.add_parser("check", help="validate policy files")
    check.add_argument("dir", nargs="?")
    check.set_defaults(func=cmd_policy_check)
    sub.add_parser("purge", help="destroy expired stored messages now").set_defaults(func=cmd_purge)
    queue = sub.add_parser("queue", help="inspect the queue")
    queue_actions = queue.add_subparsers(dest="action", required=True)
    queue_actions.add_parser("list")
    queue_actions.add_parser("flush")
    for name in ("show", "delete"):
        queue_actions.add_parser(name).add_argument("id")
    queue.set_defaults(func=cmd_queue)
    keys = sub.add_parser("keys", help="key-encryption keys").add_subparsers(dest="action", required=True)
    keys.add_parser("rotate").set_defaults(func=cmd_keys)
    pickup = sub.add_parser("pickup", help="stored messages")
    pickup_actions = pickup.add_subparsers(dest="action", required=True)
    pickup_actions.add_parser("list").add_argument("--recipient")
    for name in ("revoke", "audit"):
        pickup_actions.add_parser(name).add_argument("id")
    pickup.set_defaults(func=cmd_pickup)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO
    try:
        config = load_config(args.config)
        return int(args.func(config, args))
    except (ConfigError, PolicyError, ValueError, OSError) as exc:
        print(f"sealgate: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
