"""`sealgate policy test`: the policy run over a folder of .eml files, as an admin checks a
rule set before it goes live; an expectation file (CSV) turns it into a regression test."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.classify.message import classify, file_chunks
from gateway.classify.policy import Decision, Policy

_YES = {"yes", "true", "1", "confidential", "y"}
_NO = {"no", "false", "0", "", "n", "not confidential"}


@dataclass
class FileResult:
    path: Path
    name: str  # as the expectation file names it: relative to the folder given
    decisions: list[Decision]

    @property
    def confidential(self) -> bool:
        return any(d.confidential for d in self.decisions)

    @property
    def rule(self) -> str:
        return next((d.content_rule for d in self.decisions if d.content_rule), "")

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.name, "confidential": self.confidential, "rule": self.rule,
                "recipients": [d.as_dict() for d in self.decisions]}


@dataclass
class PolicyTestReport:
    results: list[FileResult] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "files": [r.as_dict() for r in self.results],
                "mismatches": self.mismatches, "errors": self.errors}


def message_files(paths: list[Path]) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            found += [(p, p.relative_to(path).as_posix()) for p in sorted(path.rglob("*.eml"))]
        else:
            found.append((path, path.name))
    return found


def read_expectations(path: Path) -> tuple[dict[str, tuple[bool, str, int]], list[str]]:
    """file -> (confidential, rule or "", line) from a CSV with a header row naming the
    columns file, confidential and optionally rule."""
    expected: dict[str, tuple[bool, str, int]] = {}
    errors: list[str] = []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = csv.DictReader(handle)
        if rows.fieldnames is None or not {"file", "confidential"} <= set(rows.fieldnames):
            return {}, [f"{path}:1: the first row must name the columns file, confidential"
                        " (and optionally rule)"]
        for row in rows:
            line = rows.line_num
            value = (row.get("confidential") or "").strip().lower()
            if value not in _YES | _NO:
                errors.append(f"{path}:{line}: confidential must be yes or no, not {value!r}")
                continue
            expected[(row.get("file") or "").strip()] = (
                value in _YES, (row.get("rule") or "").strip(), line)
    return expected, errors


def run_policy_test(policy: Policy, paths: list[Path], expect: Path | None,
                    recipients: list[str]) -> PolicyTestReport:
    report = PolicyTestReport()
    for path, name in message_files(paths):
        try:
            decisions = classify(policy, file_chunks(path), recipients)
        except OSError as exc:
            report.errors.append(f"{path}: cannot read: {exc}")
            continue
        report.results.append(FileResult(path, name, decisions))
    if not report.results and not report.errors:
        report.errors.append("no .eml file found in " + ", ".join(map(str, paths)))
    if expect is not None:
        expected, problems = read_expectations(expect)
        report.errors += problems
        seen = set()
        for result in report.results:
            key = result.name if result.name in expected else result.path.name
            if key not in expected:
                report.mismatches.append(f"{result.name}: not in {expect}")
                continue
            seen.add(key)
            confidential, rule, line = expected[key]
            if result.confidential != confidential:
                report.mismatches.append(
                    f"{result.name}: expected {'confidential' if confidential else 'not'}"
                    f" confidential ({expect}:{line}), got"
                    f" {'confidential' if result.confidential else 'not confidential'}:"
                    f" {result.decisions[0].why}")
            elif rule and result.rule != rule:
                report.mismatches.append(f"{result.name}: expected rule {rule!r} ({expect}:{line}),"
                                         f" got {result.rule or 'no rule'!r}")
        for key, (_c, _r, line) in expected.items():
            if key not in seen:
                report.mismatches.append(f"{key}: expected ({expect}:{line}) but not tested")
    return report


def print_results(report: PolicyTestReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
        return
    for result in report.results:
        for decision in result.decisions:
            verdict = "confidential" if decision.confidential else "not confidential"
            print(f"{result.name}: {decision.recipient}: {verdict}"
                  f" ({decision.why}); mode {decision.mode}")
    for problem in report.errors + report.mismatches:
        print(f"mismatch: {problem}" if problem in report.mismatches else f"error: {problem}")
    total = len(report.results)
    print(f"{total} file(s), {sum(r.confidential for r in report.results)} confidential,"
          f" {len(report.mismatches)} mismatch(es), {len(report.errors)} error(s)")
