"""Configuration: the TOML file of DESIGN.md, loaded into typed, validated settings."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = Path("conf/sealgate.toml")
# Keys naming files or directories: relative values are relative to the config file's
# directory, because cron and systemd do not run sealgate in the data directory.
PATH_KEYS = (("smtp", "tls_cert"), ("smtp", "tls_key"), ("delivery", "ca_file"),
             ("storage", "dir"), ("storage", "keys_dir"), ("policy", "dir"),
             ("pickup", "logo_file"), ("pickup", "templates_dir"), ("dkim", "key_file"))
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")
_ADDRESS = re.compile(r"[^@\s<>]+@[A-Za-z0-9.-]+")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ConfigError(ValueError):
    """A config file that cannot be used; the message says which key and why."""


def parse_duration(text: str | int, key: str = "duration") -> float:
    """Seconds from "30s", "5m", "4h", "5d", "2w" or a bare number of seconds."""
    if isinstance(text, int):
        return float(text)
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{key}: {text!r} is not a duration like 30s, 5m, 4h or 5d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_hostport(text: str, key: str, default_port: int | None = None) -> tuple[str, int]:
    """("127.0.0.1", 2525) from "127.0.0.1:2525"; IPv6 as "[::1]:2525"."""
    match = re.match(r"^\[([^\]]+)\](?::(\d+))?$|^([^:\[\]]+)(?::(\d+))?$", text.strip())
    if not match:
        raise ConfigError(f"{key}: {text!r} is not host:port")
    host = match.group(1) or match.group(3)
    port = match.group(2) or match.group(4)
    if port is None and default_port is None:
        raise ConfigError(f"{key}: {text!r} needs a port (host:port)")
    number = int(port) if port else int(default_port or 0)
    if not 1 <= number <= 65535:
        raise ConfigError(f"{key}: port {number} is out of range (1-65535)")
    return host, number


@dataclass
class SMTPConfig:
    listen: str = "127.0.0.1:2525"
    hostname: str = "gateway.example.org"
    allowed_networks: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    max_message_size: int = 104857600
    max_recipients: int = 1000
    tls_cert: str = ""
    tls_key: str = ""
    processes: int = 0                   # SMTP listener processes sharing the port; 0 = one per CPU
    max_connections: int = 200           # open SMTP sessions in total; more get 421 4.7.0
    max_connections_per_client: int = 20  # open SMTP sessions per client address
    idle_timeout: str = "300s"           # silence (not transfer time) before 421 4.4.2 and close
    min_free_space: int = 10485760       # bytes the storage dir keeps free; else 452 4.3.1 at MAIL

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.allowed_networks]


@dataclass
class DeliveryConfig:
    port: int = 25
    ca_file: str = ""
    concurrency: int = 20
    per_domain_concurrency: int = 5
    max_queue_lifetime: str = "5d"
    delay_warning: str = "4h"
    retry_initial: str = "5m"
    retry_max: str = "4000s"
    connect_timeout: str = "30s"
    poll_interval: str = "1s"
    tls_cache_ttl: str = "1h"        # how long a host seen without STARTTLS is remembered
    dane: bool = True                # honour DANE TLSA records (needs a validating resolver)
    mta_sts: bool = True             # honour MTA-STS policies
    mta_sts_port: int = 443          # HTTPS port of mta-sts.<domain> (tests use another)
    processes: int = 0               # queue-runner processes; 0 = one per CPU
    shutdown_timeout: str = "30s"    # on SIGTERM, how long deliveries in flight may finish
    lease: str = "10m"               # a claim's lease: a runner that died is taken over after it
    history_retention: str = "30d"   # settled messages and their attempts are forgotten after it
    downgrade_protection: bool = True  # a host that did STARTTLS recently and now does not:
                                       # confidential mail avoids it, other mail waits, alert
    downgrade_window: str = "30d"    # how long a host's working STARTTLS is remembered
    downgrade_hold: str = "1h"       # ordinary mail waits this long after a downgrade
    mta_sts_refresh: str = "1h"      # how often cached MTA-STS policies near expiry are refetched


@dataclass
class DNSConfig:
    nameservers: list[str] = field(default_factory=list)
    timeout: str = "5s"
    # `sealgate probe` checks that the resolver validates DNSSEC: a signed name must come
    # back with the AD bit, a name with a deliberately broken signature with SERVFAIL.
    dnssec_check_signed: str = "isc.org"
    dnssec_check_bogus: str = "dnssec-failed.org"


@dataclass
class S3Config:
    """[storage.s3]: where storage.blobs = "s3" keeps blobs (MinIO, Ceph RGW, AWS S3)."""
    endpoint: str = ""                # http(s)://host[:port]
    bucket: str = ""
    region: str = ""
    access_key_id: str = ""
    secret_access_key_file: str = ""  # the secret itself never sits in the config

    def secret_access_key(self) -> str:
        """The secret from its file (first line, surrounding blanks removed)."""
        try:
            text = Path(self.secret_access_key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"storage.s3.secret_access_key_file: cannot read"
                              f" {self.secret_access_key_file}: {exc}") from None
        lines = text.strip().splitlines()
        if not lines or not lines[0].strip():
            raise ConfigError(f"storage.s3.secret_access_key_file: {self.secret_access_key_file}"
                              " is empty")
        return lines[0].strip()


@dataclass
class StorageConfig:
    dir: str = "var"
    backend: str = "sqlite"  # which storage back-end implements the Protocols (storage/)
    url: str = ""            # postgresql://user@host:5432/db (password: PGPASSWORD, ~/.pgpass)
    blobs: str = "local"     # spool and encrypted pickups: "local" files, "database" or "s3"
    keys_dir: str = ""       # key-encryption keys; "" = <dir>/keys
    s3: S3Config = field(default_factory=S3Config)  # [storage.s3], for blobs = "s3"

    @property
    def keys_path(self) -> Path:
        return Path(self.keys_dir) if self.keys_dir else Path(self.dir) / "keys"


@dataclass
class PolicyConfig:
    dir: str = "policies"


@dataclass
class PickupConfig:
    listen: str = "127.0.0.1:8025"
    base_url: str = "http://127.0.0.1:8025"
    retention_days: int = 21
    max_retention_days: int = 30
    organization: str = "Sealgate"
    session_idle_timeout: str = "30m"
    logo_file: str = ""              # PNG/SVG shown in the portal header
    brand_color: str = "#1d4ed8"     # accent colour of buttons and links
    templates_dir: str = ""          # overrides for templates/ without editing the package
    max_reply_size: int = 104857600  # total of a portal reply with its attachments
    # Reverse proxies whose X-Forwarded-For is believed; [] = none (the connecting address counts).
    trusted_proxies: list[str] = field(default_factory=list)
    sign_in: str = "both"            # "password", "code" (emailed each time) or "both"
    default_language: str = "en"     # notifications and first visits; pages follow Accept-Language
    require_name: bool = False       # ask first and last name at registration

    def proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.trusted_proxies]


def portal_languages() -> tuple[str, ...]:
    """The languages the portal and its mail speak: English, and every catalog shipped in
    the templates package (locale/LANG/LC_MESSAGES/messages.mo): drop one in to add one."""
    from gateway.resources import TEMPLATES_DIR

    found = {path.parent.parent.name
             for path in (TEMPLATES_DIR / "locale").glob("*/LC_MESSAGES/messages.mo")}
    return ("en", *sorted(found - {"en"}))


@dataclass
class NotifyConfig:
    from_: str = "secure-mail@example.org"


@dataclass
class InternalConfig:
    relay: str = "127.0.0.1:25"
    domains: list[str] = field(default_factory=list)  # DSNs and mail to them go to relay


@dataclass
class TLSRptConfig:
    enabled: bool = False            # send RFC 8460 aggregate reports to domains asking for them
    organization: str = ""           # organization-name in the reports; "" = smtp.hostname
    contact: str = ""                # contact-info in the reports; "" = the from address
    from_: str = ""                  # envelope and From of emailed reports; "" = notify.from
    submitter: str = ""              # TLS-Report-Submitter; "" = smtp.hostname

    def sender(self, config: Config) -> str:
        return self.from_ or config.notify.from_

    def submitter_domain(self, config: Config) -> str:
        return self.submitter or config.smtp.hostname


@dataclass
class AlertsConfig:
    to: str = ""                     # admin alerts (double bounces, TLS downgrades); "" = log only


@dataclass
class DKIMConfig:
    domain: str = ""
    selector: str = ""
    key_file: str = ""
    sign_relayed: bool = False   # also sign mail relayed for the organization's servers


@dataclass
class MetricsConfig:
    listen: str = ""                 # host:port of /metrics, /healthz, /readyz; "" = off


@dataclass
class LogConfig:
    format: str = "text"             # "text" or "json" (one object a line)


_SECTIONS: dict[str, type] = {
    "smtp": SMTPConfig,
    "delivery": DeliveryConfig,
    "dns": DNSConfig,
    "storage": StorageConfig,
    "policy": PolicyConfig,
    "pickup": PickupConfig,
    "notify": NotifyConfig,
    "internal": InternalConfig,
    "dkim": DKIMConfig,
    "alerts": AlertsConfig,
    "tlsrpt": TLSRptConfig,
    "metrics": MetricsConfig,
    "log": LogConfig,
}


@dataclass
class Config:
    smtp: SMTPConfig = field(default_factory=SMTPConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    dns: DNSConfig = field(default_factory=DNSConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    pickup: PickupConfig = field(default_factory=PickupConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    internal: InternalConfig = field(default_factory=InternalConfig)
    dkim: DKIMConfig = field(default_factory=DKIMConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    tlsrpt: TLSRptConfig = field(default_factory=TLSRptConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    source: Path | None = None

    @property
    def storage_dir(self) -> Path:
        return Path(self.storage.dir)

    @property
    def policy_dir(self) -> Path:
        return Path(self.policy.dir)


def _section(name: str, cls: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name.rstrip("_"): f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        spec = known.get(key)
        if spec is None:
            raise ConfigError(f"[{name}] unknown key {key!r} (known: {', '.join(sorted(known))})")
        default = getattr(cls(), spec.name)
        if isinstance(default, S3Config):  # a table of its own: [storage.s3]
            kwargs[spec.name] = _section(f"{name}.{key}", S3Config, value)
            continue
        if (not isinstance(value, type(default))
                or isinstance(value, bool) != isinstance(default, bool)):
            raise ConfigError(f"{name}.{key}: expected {type(default).__name__}, got {value!r}")
        kwargs[spec.name] = value
    return cls(**kwargs)


STORAGE_BACKENDS = ("sqlite", "postgresql")
STORAGE_BLOBS = {"sqlite": ("local",), "postgresql": ("database", "s3")}  # what each has
BLOB_PLACES = ("local", "database", "s3")
URL_SCHEMES = ("postgresql://", "postgres://")


def validate(config: Config) -> Config:
    """Fail at start-up, with the key's name, rather than on the first message."""
    try:
        config.smtp.networks()
    except ValueError as exc:
        raise ConfigError(f"smtp.allowed_networks: {exc}") from None
    parse_hostport(config.smtp.listen, "smtp.listen")
    parse_hostport(config.pickup.listen, "pickup.listen")
    _check_trusted_proxies(config.pickup.trusted_proxies)
    parse_hostport(config.internal.relay, "internal.relay", 25)
    if config.metrics.listen:
        parse_hostport(config.metrics.listen, "metrics.listen")
    if config.log.format not in ("text", "json"):
        raise ConfigError(f"log.format: {config.log.format!r} is not \"text\" or \"json\"")
    for ns in config.dns.nameservers:
        parse_hostport(ns, "dns.nameservers", 53)
    for key in ("dnssec_check_signed", "dnssec_check_bogus"):
        _check_domain_name(getattr(config.dns, key), f"dns.{key}")
    for key in ("max_queue_lifetime", "delay_warning", "retry_initial", "retry_max",
                "connect_timeout", "poll_interval", "tls_cache_ttl", "shutdown_timeout",
                "lease", "history_retention", "downgrade_window", "downgrade_hold",
                "mta_sts_refresh"):
        parse_duration(getattr(config.delivery, key), f"delivery.{key}")
    parse_duration(config.pickup.session_idle_timeout, "pickup.session_idle_timeout")
    if parse_duration(config.smtp.idle_timeout, "smtp.idle_timeout") <= 0:
        raise ConfigError("smtp.idle_timeout must be longer than 0s")
    for key in ("max_connections", "max_connections_per_client"):
        if getattr(config.smtp, key) < 1:
            raise ConfigError(f"smtp.{key} must be at least 1")
    if config.smtp.max_connections_per_client > config.smtp.max_connections:
        raise ConfigError("smtp.max_connections_per_client must not exceed smtp.max_connections")
    for section in ("smtp", "delivery"):
        if not 0 <= getattr(config, section).processes <= 256:
            raise ConfigError(f"{section}.processes must be between 0 (one per CPU) and 256")
    if parse_duration(config.delivery.history_retention, "delivery.history_retention") < \
            parse_duration(config.delivery.max_queue_lifetime, "delivery.max_queue_lifetime"):
        # Forgetting a message is only sure to be harmless once it can no longer be retried.
        raise ConfigError("delivery.history_retention must be at least"
                          " delivery.max_queue_lifetime")
    if parse_duration(config.delivery.lease, "delivery.lease") < 10:
        raise ConfigError("delivery.lease must be at least 10s (runners renew it as they go)")
    if config.smtp.min_free_space < 0:
        raise ConfigError("smtp.min_free_space must be 0 or more bytes")
    if not 1 <= config.pickup.retention_days <= config.pickup.max_retention_days:
        raise ConfigError("pickup.retention_days must be between 1 and pickup.max_retention_days")
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", config.pickup.brand_color):
        raise ConfigError("pickup.brand_color must look like #1d4ed8")
    if config.pickup.sign_in not in ("password", "code", "both"):
        raise ConfigError(f"pickup.sign_in: {config.pickup.sign_in!r} is not \"password\","
                          " \"code\" or \"both\"")
    if config.pickup.default_language not in portal_languages():
        raise ConfigError(f"pickup.default_language: {config.pickup.default_language!r} is not"
                          f" one of {', '.join(portal_languages())}")
    for domain in config.internal.domains:
        if not isinstance(domain, str) or not _DOMAIN.fullmatch(domain):
            raise ConfigError(f"internal.domains: {domain!r} is not a domain like org.example"
                              " or *.org.example")
    if config.alerts.to and not _ADDRESS.fullmatch(config.alerts.to):
        raise ConfigError(f"alerts.to: {config.alerts.to!r} is not an address like"
                          " postmaster@org.example")
    _check_tlsrpt(config)
    if bool(config.smtp.tls_cert) != bool(config.smtp.tls_key):
        raise ConfigError("smtp.tls_cert and smtp.tls_key must be set together")
    _check_storage(config.storage)
    return config


def _check_tlsrpt(config: Config) -> None:
    tlsrpt = config.tlsrpt
    for key, value in (("from", tlsrpt.from_), ("contact", tlsrpt.contact)):
        if value and not _ADDRESS.fullmatch(value):
            raise ConfigError(f"tlsrpt.{key}: {value!r} is not an address like"
                              " tlsrpt@org.example")
    if tlsrpt.submitter and (tlsrpt.submitter.startswith("*")
                             or not _DOMAIN.fullmatch(tlsrpt.submitter)):
        raise ConfigError(f"tlsrpt.submitter: {tlsrpt.submitter!r} is not a domain like"
                          " mail.org.example")


def _check_storage(storage: StorageConfig) -> None:
    if storage.backend not in STORAGE_BACKENDS:
        raise ConfigError(f"storage.backend: {storage.backend!r} is not available; this"
                          f" version has: {', '.join(STORAGE_BACKENDS)}")
    if storage.blobs not in BLOB_PLACES:
        raise ConfigError(f"storage.blobs: {storage.blobs!r} is not one of"
                          f" {', '.join(BLOB_PLACES)}")
    if storage.blobs not in STORAGE_BLOBS[storage.backend]:
        raise ConfigError(f"storage.blobs: {storage.blobs!r} is not available with"
                          f" storage.backend = {storage.backend!r}; it keeps blobs in:"
                          f" {', '.join(STORAGE_BLOBS[storage.backend])}")
    if storage.backend == "sqlite" and storage.keys_dir and (
            Path(storage.keys_dir) != Path(storage.dir) / "keys"):
        raise ConfigError("storage.keys_dir: the sqlite back-end keeps its keys in"
                          " <storage.dir>/keys; leave keys_dir empty")
    if storage.backend == "postgresql":
        check_storage_url(storage.url)
    if storage.blobs == "s3":
        check_s3(storage.s3)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[A-Za-z0-9-]+")


def check_s3(s3: S3Config) -> None:
    """[storage.s3] complete for storage.blobs = "s3", its secret readable from its file."""
    from urllib.parse import urlsplit

    example = ' like "https://s3.example.org" or "http://127.0.0.1:9000"'
    if not s3.endpoint:
        raise ConfigError(f"storage.s3.endpoint: must be set for storage.blobs = \"s3\",{example}")
    try:
        parts = urlsplit(s3.endpoint)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"storage.s3.endpoint: {s3.endpoint!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") \
            or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"storage.s3.endpoint: {s3.endpoint!r} is not a URL{example}"
                          " (scheme, host and port only: the bucket is storage.s3.bucket)")
    if not _BUCKET.fullmatch(s3.bucket) or ".." in s3.bucket:
        raise ConfigError(f"storage.s3.bucket: {s3.bucket!r} is not a bucket name (3 to 63"
                          " lower-case letters, digits, dots and hyphens)")
    if not _REGION.fullmatch(s3.region):
        raise ConfigError(f"storage.s3.region: {s3.region!r} is not a region like"
                          " \"eu-central-1\" (MinIO and Ceph RGW take \"us-east-1\")")
    if not s3.access_key_id or any(c.isspace() for c in s3.access_key_id):
        raise ConfigError("storage.s3.access_key_id: must be set (the store's access key id)")
    if not s3.secret_access_key_file:
        raise ConfigError("storage.s3.secret_access_key_file: must be set: a file holding the"
                          " secret access key (kept out of the config, readable by sealgate"
                          " only)")
    s3.secret_access_key()


def check_storage_url(url: str) -> None:
    """A postgresql:// URL that libpq can parse, with no password in it (the password comes
    from PGPASSWORD or ~/.pgpass, so config files can be shared and logged)."""
    from psycopg.conninfo import conninfo_to_dict  # only PostgreSQL configs pay the import

    if not url:
        raise ConfigError("storage.url: must be set for storage.backend = \"postgresql\","
                          " like postgresql://sealgate@db.example.org:5432/sealgate")
    if not url.startswith(URL_SCHEMES):
        raise ConfigError(f"storage.url: {url!r} is not a postgresql:// URL, like"
                          " postgresql://sealgate@db.example.org:5432/sealgate")
    try:
        params = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError; its text names the bad part
        raise ConfigError(f"storage.url: cannot be parsed: {exc}") from None
    port = str(params.get("port") or "5432")
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError(f"storage.url: port {port!r} is not a number from 1 to 65535")
    if params.get("password"):
        raise ConfigError("storage.url: holds a password; put it in PGPASSWORD or ~/.pgpass"
                          " instead")


_DOMAIN_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                          r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?")


def _check_domain_name(value: str, key: str) -> None:
    if not _DOMAIN_NAME.fullmatch(value):
        raise ConfigError(f"{key}: {value!r} is not a fully qualified domain name"
                          " (e.g. isc.org)")


def _check_trusted_proxies(entries: list[str]) -> None:
    """Addresses or networks only: a name or "*" would let anyone forge the client address."""
    for entry in entries:
        try:
            if not isinstance(entry, str):  # ip_network would take 1 for 0.0.0.1
                raise TypeError(entry)
            ipaddress.ip_network(entry, strict=False)
        except (TypeError, ValueError):
            raise ConfigError(f"pickup.trusted_proxies: {entry!r} is not an IP address or "
                              "network like 127.0.0.1 or 10.0.0.0/8") from None


def _resolve_paths(config: Config, base: Path) -> None:
    for values, key in [*((getattr(config, s), k) for s, k in PATH_KEYS),
                        (config.storage.s3, "secret_access_key_file")]:  # read by validate
        value = getattr(values, key)
        if value and not Path(value).is_absolute():
            setattr(values, key, str((base / value).resolve()))


def _default_policy_dir(config: Config, explicit: bool) -> None:
    """Without a policy.dir key, a policies/ folder beside the config, else the packaged
    default policy (a fresh install runs with the commented example)."""
    if explicit:
        return
    beside = Path(config.policy.dir)
    if not beside.is_dir():
        from gateway.resources import DEFAULT_POLICY_DIR
        config.policy.dir = str(DEFAULT_POLICY_DIR)


def load_config(path: str | Path | None = None) -> Config:
    """The config from PATH, else $SEALGATE_CONFIG, else conf/sealgate.toml; with none of
    them (a fresh install run from an empty directory), the built-in defaults."""
    named = path or os.environ.get("SEALGATE_CONFIG")
    chosen = Path(named or DEFAULT_CONFIG_PATH)
    try:
        data = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if named:
            raise ConfigError(f"{chosen}: config file not found") from None
        config = Config()
        _default_policy_dir(config, explicit=False)
        return validate(config)
    except UnicodeDecodeError:
        raise ConfigError(f"{chosen}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{chosen}: {exc}") from None
    config = Config(source=chosen)
    for name, values in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"{chosen}: unknown section [{name}]")
        setattr(config, name, _section(name, cls, values))
    _resolve_paths(config, chosen.resolve().parent)
    _default_policy_dir(config, explicit="dir" in data.get("policy", {}))
    return validate(config)
