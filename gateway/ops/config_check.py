"""`sealgate config check [--json]`: the config validated without starting anything: every
key (each unknown key and wrong type, not only the first), the values (durations, listen
addresses, networks), the files it names, the policy it points to (loaded as `serve`
would), the SMTP certificate and the DKIM key."""

from __future__ import annotations

import os
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import (
    _SECTIONS,
    DEFAULT_CONFIG_PATH,
    PATH_KEYS,
    Config,
    ConfigError,
    _section,
    load_config,
)

# Path keys that must name a directory (the others name files); storage.dir may not exist
# yet (the first start makes it); policy.dir is checked by loading the policy.
DIRECTORY_KEYS = {("storage", "dir"), ("policy", "dir"), ("pickup", "templates_dir")}


@dataclass
class ConfigReport:
    file: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    config: Config | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "file": self.file, "errors": self.errors,
                "warnings": self.warnings}


def check_config(path: str | Path | None = None) -> ConfigReport:
    named = path or os.environ.get("SEALGATE_CONFIG")
    chosen = Path(named or DEFAULT_CONFIG_PATH)
    report = ConfigReport(str(chosen))
    if chosen.exists() or named:
        try:
            data = tomllib.loads(chosen.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            report.errors.append(_file_error(chosen, exc))
            return report
        report.errors += _key_errors(data)
        if report.errors:
            return report
    else:
        report.file = "built-in defaults (no config file)"
    try:
        report.config = load_config(path)
    except (ConfigError, OSError) as exc:
        report.errors.append(str(exc))
        return report
    _check_files(report.config, report)
    _check_policy(report.config, report)
    _check_keys_and_certificates(report.config, report)
    return report


def _file_error(chosen: Path, exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{chosen}: config file not found"
    if isinstance(exc, UnicodeDecodeError):
        return f"{chosen}: not a UTF-8 text file"
    if isinstance(exc, OSError):
        return f"{chosen}: cannot be read: {exc.strerror or exc}"
    return f"{chosen}: {exc}"


def _key_errors(data: dict[str, Any]) -> list[str]:
    """Every unknown section, unknown key and value of the wrong type, one message each."""
    errors = []
    for name, values in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            errors.append(f"unknown section [{name}] (known: {', '.join(sorted(_SECTIONS))})")
            continue
        if not isinstance(values, dict):
            errors.append(f"[{name}] must be a table")
            continue
        for key, value in values.items():
            try:
                _section(name, cls, {key: value})
            except ConfigError as exc:
                errors.append(str(exc))
    return errors


def _check_files(config: Config, report: ConfigReport) -> None:
    for section, key in PATH_KEYS:
        value = getattr(getattr(config, section), key)
        if not value or (section, key) == ("policy", "dir"):
            continue
        where = Path(value)
        if (section, key) == ("storage", "dir"):
            _check_storage_dir(where, report)
        elif not where.exists():
            report.errors.append(f"{section}.{key}: {where} does not exist")
        elif (section, key) in DIRECTORY_KEYS and not where.is_dir():
            report.errors.append(f"{section}.{key}: {where} is not a directory")
        elif (section, key) not in DIRECTORY_KEYS and not where.is_file():
            report.errors.append(f"{section}.{key}: {where} is not a file")


def _check_storage_dir(where: Path, report: ConfigReport) -> None:
    if where.exists():
        if not where.is_dir():
            report.errors.append(f"storage.dir: {where} is not a directory")
        elif not os.access(where, os.W_OK | os.X_OK):
            report.errors.append(f"storage.dir: {where} is not writable by this user")
        return
    parent = where.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        report.errors.append(f"storage.dir: {where} does not exist and {parent} is not"
                             " writable by this user")
    else:
        report.warnings.append(f"storage.dir: {where} does not exist yet; the first start"
                               " makes it")


def _check_policy(config: Config, report: ConfigReport) -> None:
    from gateway.classify.policy import check_policy

    policy = check_policy(config.policy_dir)
    report.errors += [f"policy.dir: {problem}" for problem in policy.errors]
    report.warnings += [f"policy.dir: {warning}" for warning in policy.warnings]
    if policy.policy is None and not policy.errors:
        report.errors.append(f"policy.dir: {config.policy_dir}: the policy cannot be used")


def _check_keys_and_certificates(config: Config, report: ConfigReport) -> None:
    from gateway.delivery.dkim import load_signer
    from gateway.inbound.server import server_tls_context

    if config.smtp.tls_cert and Path(config.smtp.tls_cert).is_file() \
            and Path(config.smtp.tls_key).is_file():
        try:
            server_tls_context(config)
        except (ssl.SSLError, OSError) as exc:
            report.errors.append(f"smtp.tls_cert/smtp.tls_key: {config.smtp.tls_cert} and"
                                 f" {config.smtp.tls_key} are not a certificate and its"
                                 f" key: {exc}")
    if not config.dkim.key_file or Path(config.dkim.key_file).is_file():
        try:
            load_signer(config)
        except ConfigError as exc:
            report.errors.append(str(exc))
