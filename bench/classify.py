"""Classification cost with 20 [[rule]]s (detectors, body and subject regexes, sender,
header, recipient domain and attachment rules): a 10 KB message and a 1 MiB message, none
of whose rules match (every rule is evaluated, every detector runs over the whole text),
fed in 64 KiB pieces as the SMTP side feeds the body scan; the header-only decision of the
default policy for comparison. Then compare.sh's own message (bench.py's plain 10 KB text,
a ten-digit number on every line) classified as the SMTP side does it, with the rules and
with the default policy: the difference is what the rules add to each relayed message, to
set against compare.sh's CPU ms/msg.

Usage: python bench/classify.py [--rounds 300] [--write-policy DIR]
  --write-policy DIR   only write the 20-rule policy to DIR/50-rules.toml (for
                       ../shared/perf/compare.sh with PROJECT pointing at a copy)
"""

from __future__ import annotations

import argparse
import base64
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.classify.body_scan import BodyScan  # noqa: E402
from gateway.classify.message import classify  # noqa: E402
from gateway.classify.policy import Policy, decide, load_policy, read_header_section  # noqa: E402
from gateway.resources import DEFAULT_POLICY_DIR  # noqa: E402

RULES = """
[policy]
scan_limit = "1MiB"

[[rule]]
name = "newsletters"
sender = "*@newsletter.example"
confidential = false
""" + "".join(f"""
[[rule]]
name = "{name}"
detect = ["{name}"]
confidential = true
""" for name in ("us-ssn", "payment-card", "iban", "us-npi", "icd10", "dob",
                 "encrypted-attachment")) + """
[[rule]]
name = "phi-two"
detect = ["icd10", "dob", "us-npi"]
min_count = 2
confidential = true

[[rule]]
name = "mrn"
body_regex = "(?i)\\\\bMRN[:# ]*\\\\d{6,10}\\\\b"
confidential = true

[[rule]]
name = "passport"
body_regex = "(?i)passport (?:no|number)[.:]? *[A-Z0-9]{8,9}\\\\b"
confidential = true

[[rule]]
name = "hiv"
body_regex = "(?i)\\\\b(?:HIV|hepatitis [BC]|psychiatric)\\\\b"
confidential = true

[[rule]]
name = "subject"
subject_regex = "(?i)\\\\b(?:lab results|diagnosis|claim)\\\\b"
confidential = true

[[rule]]
name = "priority"
header = { "X-Classification" = ["restricted", "secret"] }
confidential = true

[[rule]]
name = "insurer"
recipient_domain = ["*.insurer.example"]
confidential = true
mode = "require-verified-tls"

[[rule]]
name = "spreadsheets"
attachment_name = ["*.xlsx", "*.csv"]
confidential = true

[[rule]]
name = "pdf-to-partners"
attachment_type = ["application/pdf"]
recipient_domain = "partner.example"
confidential = true

[[rule]]
name = "payroll"
sender = "*@payroll.example"
confidential = true

[[rule]]
name = "diagnosed"
body_regex = "(?i)\\b(?:diagnosed with|prognosis)\\b"
confidential = true

[[rule]]
name = "records"
body_regex = "(?i)medical record|patient chart"
confidential = true
"""

SENDER = "doctor@clinic.example"  # the envelope sender, as over SMTP
WORDS = ("the quick brown fox jumps over a lazy dog while the meeting on friday at 10:30 in"
         " room 4 discusses quarterly numbers 2024 and invoice 88231 for order 771 ").split()


def text_of(size: int) -> bytes:
    lines, total, n = [], 0, 0
    while total < size:
        line = " ".join(WORDS[(n + i) % len(WORDS)] for i in range(12)) + f" {n * 7919}\r\n"
        lines.append(line)
        total += len(line)
        n += 1
    return "".join(lines).encode()


def message(size: int) -> bytes:
    head = (b"From: doctor@clinic.example\r\nTo: someone@plain.example\r\nSubject: weekly"
            b" update\r\nMessage-ID: <bench@clinic.example>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n')
    attachment = base64.encodebytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 2048).replace(b"\n", b"\r\n")
    return (head + b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + text_of(size)
            + b"--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="logo.png"\r\n\r\n' + attachment
            + b"--b--\r\n")


def relay_message(size: int = 10240) -> tuple[bytes, bytes]:
    """The header section and body of a message as ../shared/perf/bench.py sends it."""
    head = (b"From: <sender@bench.perf.test>\r\nTo: <rcpt@sink.perf.test>\r\n"
            b"Subject: perf run 0000001\r\nMessage-ID: <run.0000001@bench.perf.test>\r\n"
            b"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=us-ascii\r\n")
    line = b"The quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJKLMNOPQRST\r\n"
    room = size - len(head) - 4
    return head, (line * (room // len(line) + 1))[:room] + b"\r\n"


def smtp_side(policy: Policy, head: bytes, body: bytes) -> None:
    """What the SMTP side does to classify a message (inbound/handler.py): the header-only
    decision, then, with body rules, the body scan fed as DATA arrives and the decision
    again with its findings."""
    section = read_header_section(head)
    decide(policy, section, "rcpt@sink.perf.test", sender="sender@bench.perf.test")
    if policy.needs_body:
        scan = BodyScan(policy.content_rules, policy.scan.scan_limit, head)
        scan.feed(b"\r\n" + body)
        decide(policy, section, "rcpt@sink.perf.test", sender="sender@bench.perf.test",
               content=scan.close())


def measure(rounds: int, run: Callable[[], object]) -> tuple[float, float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return statistics.median(samples), samples[min(int(len(samples) * .99), len(samples) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--write-policy", metavar="DIR")
    args = parser.parse_args()
    if args.write_policy:
        Path(args.write_policy).mkdir(parents=True, exist_ok=True)
        (Path(args.write_policy) / "50-rules.toml").write_text(RULES)
        return
    work = Path(tempfile.mkdtemp(prefix="sealgate-classify-"))
    (work / "50-rules.toml").write_text((DEFAULT_POLICY_DIR / "00-default.toml").read_text()
                                        + RULES)
    policy = load_policy(work)
    default = load_policy(DEFAULT_POLICY_DIR)
    assert len(policy.content_rules) == 20, len(policy.content_rules)
    print(f"classification, {len(policy.content_rules)} rules (7 detectors, 5 body regexes),"
          " one recipient, no rule matching:")
    for label, size, rounds in (("10 KB", 10_000, args.rounds),
                                ("1 MiB", 1 << 20, max(args.rounds // 10, 20))):
        data = message(size)
        pieces = [data[i:i + 65536] for i in range(0, len(data), 65536)]
        decision = classify(policy, pieces, ["someone@plain.example"], SENDER)[0]
        assert not decision.confidential, decision.why
        median, p99 = measure(rounds, functools.partial(
            classify, policy, pieces, ["someone@plain.example"], SENDER))
        base_median, base_p99 = measure(rounds, functools.partial(
            classify, default, pieces, ["someone@plain.example"], SENDER))
        print(f"  {label:6} ({len(data):>8} bytes): median {median * 1e3:8.3f} ms   p99"
              f" {p99 * 1e3:8.3f} ms   ({rounds} rounds; default policy, header only:"
              f" median {base_median * 1e3:.3f} ms, p99 {base_p99 * 1e3:.3f} ms)")
    head, body = relay_message()
    rounds = args.rounds * 10
    median, p99 = measure(rounds, functools.partial(smtp_side, policy, head, body))
    base_median, base_p99 = measure(rounds, functools.partial(smtp_side, default, head, body))
    print(f"compare.sh's 10 KB message as the SMTP side classifies it ({rounds} rounds): 20 rules"
          f" median {median * 1e6:.0f} us (p99 {p99 * 1e6:.0f}), default policy"
          f" {base_median * 1e6:.0f} us (p99 {base_p99 * 1e6:.0f});\n  added by the rules:"
          f" {(median - base_median) * 1e6:.0f} us a message, to set against compare.sh's"
          " relay CPU ms/msg")


if __name__ == "__main__":
    main()
