"""conf/sealgate.production.toml: it loads, and names every key of every section of the
config, each with a comment saying what it does (a key added to gateway/config.py without
being documented there fails here)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path

from gateway.config import _SECTIONS, Config, load_config

PRODUCTION = Path(__file__).resolve().parent.parent / "conf" / "sealgate.production.toml"
_KEY = re.compile(r"^([a-z_]+)\s*=")


def config_keys() -> set[str]:
    return {key for section, cls in _SECTIONS.items() for key in _keys(section, cls)}


def _keys(section: str, cls: type) -> set[str]:
    """SECTION's keys; a table inside it ([storage.s3]) by its own keys."""
    found = set()
    for f in fields(cls):
        default = getattr(cls(), f.name)
        name = f"{section}.{f.name.rstrip('_')}"
        found |= _keys(name, type(default)) if is_dataclass(default) else {name}
    return found


def _flat(prefix: str, values: dict[str, object]) -> set[str]:
    return {key for k, v in values.items()
            for key in (_flat(f"{prefix}.{k}", v) if isinstance(v, dict) else {f"{prefix}.{k}"})}


def file_keys() -> dict[str, str]:
    """"section.key" -> the rest of its line, for every key line of the file."""
    found, section = {}, ""
    for line in PRODUCTION.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif match := _KEY.match(line):
            found[f"{section}.{match.group(1)}"] = line[match.end():]
    return found


def test_the_production_example_loads() -> None:
    config = load_config(PRODUCTION)
    assert isinstance(config, Config)
    assert config.storage.dir == "/var/lib/sealgate"
    assert config.log.format == "json" and config.metrics.listen == "127.0.0.1:9125"


def test_every_config_key_appears_in_the_production_example() -> None:
    assert config_keys() - set(file_keys()) == set()


def test_every_key_of_the_production_example_has_a_comment() -> None:
    uncommented = [key for key, rest in file_keys().items() if "#" not in rest]
    assert uncommented == []


def test_the_production_example_sets_each_key_once_in_its_section() -> None:
    data = tomllib.loads(PRODUCTION.read_text())
    assert {key for s, values in data.items() for key in _flat(s, values)} == set(file_keys())
