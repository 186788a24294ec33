"""`sealgate tlsrpt send [--json]`: send the TLS reports that are due now, once."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from gateway.config import Config, parse_duration
from gateway.delivery.mx import make_resolver
from gateway.storage import open_storage
from gateway.tlsrpt.schedule import ReportOutcome, TLSReporter


def cmd_tlsrpt(config: Config, args: argparse.Namespace) -> int:
    if not config.tlsrpt.enabled:
        print("sealgate: tlsrpt.enabled is false: no sessions are counted and no report is"
              " sent (set [tlsrpt] enabled = true)", file=sys.stderr)
        return 1
    store = open_storage(config)
    try:
        resolver = make_resolver(config.dns.nameservers, parse_duration(config.dns.timeout))
        outcomes = asyncio.run(TLSReporter(config, store, resolver).send_due())
    finally:
        store.close()
    if args.json:
        print(json.dumps([o.as_dict() for o in outcomes], indent=2))
    else:
        _print(outcomes)
    return 1 if any(o.outcome in ("retry-later", "gave-up") for o in outcomes) else 0


def _print(outcomes: list[ReportOutcome]) -> None:
    if not outcomes:
        print("no TLS reports due")
    for o in outcomes:
        print(f"{o.domain} {o.day}: {o.outcome}" + (f" ({o.detail})" if o.detail else ""))
        for t in o.targets:
            print(f"  {t.target}: {t.result}" + (f" ({t.detail})" if t.detail else ""))
