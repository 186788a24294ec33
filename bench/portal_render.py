"""Time to render a 1 MB message in the pickup portal, signed in, through the whole app:
session lookup, decryption, MIME parsing, sanitizing, templates, read marking and audit.

Prints the median and the slowest of --runs requests, in milliseconds, for three 1 MB
messages: a plain-text body, an HTML body (the message page plus its body frame, which is
where the HTML is sanitized), and a short text with a 1 MB attachment.
Usage: python bench/portal_render.py [--runs 20] [--size 1000000]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config import Config  # noqa: E402
from gateway.storage.store import Route, Store  # noqa: E402
from pickup.app import create_app  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

RECIPIENT = "pat@patients.test"


def text_message(size: int) -> EmailMessage:
    message = base("1 MB of text")
    line = "The quick brown fox jumps over the lazy dog, again and again and again.\n"
    message.set_content(line * (size // len(line)))
    return message


def html_message(size: int) -> EmailMessage:
    message = base("1 MB of HTML")
    row = ('<tr><td style="color:#333;padding:4px">Result</td><td><b>14.2</b> g/dL</td>'
           '<td><a href="https://lab.example/info">info</a></td></tr>\n')
    message.set_content("See the HTML part.")
    message.add_alternative("<table>" + row * (size // len(row)) + "</table>", subtype="html")
    return message


def attachment_message(size: int) -> EmailMessage:
    message = base("1 MB attachment")
    message.set_content("Your scan is attached.")
    message.add_attachment(b"\x00\x01scan" * (size // 6), maintype="application",
                           subtype="octet-stream", filename="scan.dcm")
    return message


def base(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Dr. Doctor <doctor@hospital.example>"
    message["To"] = RECIPIENT
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@hospital.example>"
    return message


def view(client: TestClient, pickup_id: str) -> None:
    """The message page, and its body frame when it has one (as a browser would load it)."""
    page = client.get(f"/m/{pickup_id}")
    assert page.status_code == 200, page.status_code
    if 'class="message-frame"' in page.text:
        assert client.get(f"/m/{pickup_id}/body").status_code == 200


def timed(runs: int, request: Callable[[], None]) -> list[float]:
    request()  # warm up: templates compiled, caches filled
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        request()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Config()
        config.storage.dir = str(Path(tmp) / "var")
        store = Store(Path(tmp) / "var")
        app = create_app(config, store)
        token = app.state.portal.accounts.start_session(RECIPIENT)
        with store.transaction() as db:
            db.execute("INSERT INTO users (address, first_name, last_name, password_hash,"
                       " created, password_changed) VALUES (?, 'Pat', 'Ient', 'x', 0, 0)",
                       (RECIPIENT,))
        with TestClient(app) as client:
            client.cookies.set("sealgate_session", token)
            for make in (text_message, html_message, attachment_message):
                raw = make(args.size).as_bytes()
                queue_id = store.enqueue("doctor@hospital.example",
                                         [Route(RECIPIENT, True, "pickup")], raw)
                pickup_id = store.store_pickup(queue_id, "doctor@hospital.example", RECIPIENT,
                                               store.clock() + 86400)

                samples = timed(args.runs, functools.partial(view, client, pickup_id))
                print(f"{make.__name__:<20} {len(raw) / 1e6:.2f} MB  median "
                      f"{statistics.median(samples):6.1f} ms  slowest {max(samples):6.1f} ms")
        store.close()


if __name__ == "__main__":
    main()
