"""Latency of a routing decision with a warm cache: policy classification of one recipient,
the TLS-cache check and the cached MTA-STS policy, as the delivery path consults them.

Usage: python bench/route_decision.py [--rounds 20000] [--rules 200]
"""

from __future__ import annotations

import argparse
import email
import email.policy
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.classify.policy import decide, load_policy  # noqa: E402
from gateway.storage.store import Store  # noqa: E402
from gateway.tls.knowledge import TLSCache  # noqa: E402
from gateway.tls.mta_sts import STSCache, STSMode, STSPolicy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--rules", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sealgate-route-"))
    (work / "policies").mkdir()
    rules = "".join(f'[[domain]]\nmatch = "partner{n}.example"\nmode = "require-verified-tls"\n\n'
                    for n in range(args.rules))
    (work / "policies" / "p.toml").write_text(
        '[confidential]\nsubject_tags = ["[secure]"]\nheaders = { "Sensitivity" = ["Private"] }\n\n'
        '[default]\nmode = "require-tls"\n\n' + rules)
    policy = load_policy(work / "policies")
    store = Store(work / "var")
    tls_cache = TLSCache(store, 3600)
    tls_cache.record("patients.example", "mx.patients.example", False, False, "bench")
    sts_cache = STSCache(store)
    sts_cache.put("patients.example",
                  STSPolicy("1", STSMode.TESTING, ["mx.patients.example"], 86400))
    headers = email.message_from_string("From: d@clinic.example\nSubject: [secure] results\n\n",
                                        policy=email.policy.default)
    samples = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        decision = decide(policy, headers, "pat@patients.example")
        tls_cache.none_offer_starttls("patients.example", ["mx.patients.example"])
        sts_cache.get("patients.example")
        samples.append(time.perf_counter() - started)
    store.close()
    samples.sort()
    print(f"route decision with warm caches ({args.rules} domain rules, mode {decision.mode}):")
    p99 = samples[int(len(samples) * .99)]
    print(f"  median {statistics.median(samples) * 1e6:7.1f} us   p99 {p99 * 1e6:7.1f} us"
          f"   ({args.rounds} rounds)")


if __name__ == "__main__":
    main()
