"""Extract the portal's messages (babel.cfg) into templates/locale/messages.pot, merge them
into each language's messages.po, and compile each messages.mo, which are committed (so a
fresh clone installs without a compile step). Run after changing text:

    .venv/bin/python scripts/update_catalogs.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "templates" / "locale"
PYBABEL = [sys.executable, "-m", "babel.messages.frontend"]


def main() -> None:
    subprocess.run([*PYBABEL, "extract", "-F", "babel.cfg", "-k", "localized_subject:2",
                    "--no-location", "--omit-header", "--no-wrap", "--sort-output",
                    "-o", str(LOCALE / "messages.pot"),
                    "--ignore-dirs=.venv .axe build tests", "."], cwd=ROOT, check=True)
    for po in sorted(LOCALE.glob("*/LC_MESSAGES/messages.po")):
        subprocess.run([*PYBABEL, "update", "--no-wrap", "--no-fuzzy-matching",
                        "-i", str(LOCALE / "messages.pot"), "-o", str(po),
                        "-l", po.parent.parent.name], cwd=ROOT, check=True)
        subprocess.run([*PYBABEL, "compile", "--use-fuzzy", "-i", str(po),
                        "-o", str(po.with_suffix(".mo"))], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
