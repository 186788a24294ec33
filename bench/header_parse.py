"""Cost of reading a header section for classification, per message: Sealgate's hand split
(read_header_section + decide, values decoded only where an encoded word or a parsed field
needs email.policy.default) against whole-section parses with email.policy.default and
email.policy.compat32. compat32 is fast but reports none of the doubts that make an
ambiguous header section fail closed, so classification keeps the hand split.

Usage: python bench/header_parse.py [--repeat 5000]
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.classify.policy import decide, load_policy, read_header_section

SMALL = (b"Received: from bench.clinic.test (unknown [127.0.0.1])\r\n\tby gw (Sealgate) with"
         b" ESMTP id 1;\r\n\tTue, 1 Dec 2026 20:00:00 +0000\r\nFrom: bench@clinic.test\r\n"
         b"To: r1@x.test\r\nSubject: bench 1\r\nMessage-ID: <bench1@clinic.test>\r\n")
RICH = SMALL + b"".join(b"X-Header-%d: some value number %d that is long enough\r\n" % (i, i)
                        for i in range(12)) + (
    b"Subject: =?utf-8?q?R=C3=A9sultats_de_laboratoire?=\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5000)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp())
    (directory / "p.toml").write_text('[confidential]\nsubject_tags = ["[secure]"]\n'
                                      'headers = { "Sensitivity" = ["Private"] }\n')
    policy = load_policy(directory)

    def hand_split(head: bytes) -> object:
        return decide(policy, read_header_section(head), "a@b.test")

    def parsed(kind: email.policy.Policy) -> Callable[[bytes], object]:
        def run(head: bytes) -> object:
            message = email.parser.BytesHeaderParser(policy=kind).parsebytes(head)
            return [str(v) for v in message.get_all("Subject", [])], message.get_all("Sensitivity")
        return run

    readers = [("hand split + decide (classification)", hand_split),
               ("BytesHeaderParser, policy.default", parsed(email.policy.default)),
               ("BytesHeaderParser, policy.compat32", parsed(email.policy.compat32))]
    for name, head in (("small", SMALL), ("rich", RICH)):
        for label, read in readers:
            seconds = timeit.timeit(lambda r=read, h=head: r(h), number=args.repeat) / args.repeat
            print(f"{name:5} {label:40} {seconds * 1e6:7.1f} us")


if __name__ == "__main__":
    main()
