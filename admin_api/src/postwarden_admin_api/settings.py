"""Process settings of the admin service: one frozen object built at the edge.

Values come from an optional YAML file, then ``POSTWARDEN_<NAME>`` environment
variables (see :mod:`postwarden_policies.settings_source`). Settings that may
change while the service runs live in the database instead
(:mod:`postwarden_admin_api.runtime_settings`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postwarden_policies.errors import shown
from postwarden_policies.settings_source import (
    LOG_LEVELS,
    TEXT,
    RawSettings,
    Secret,
    SettingsError,
    finite_number,
    given_value,
    misspelt_variables,
    read_settings,
)
from postwarden_store import dsn_problem


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    database_url: Secret
    listen: str = "127.0.0.1:8025"
    secret_key: Secret | None = None  # AES-256 key, 32 bytes as hex or base64
    secret_key_file: Path | None = None  # read into secret_key when loading
    # The key before a rotation, to read what was encrypted under it (decrypt only).
    previous_secret_key: Secret | None = None
    previous_secret_key_file: Path | None = None  # read into previous_secret_key
    max_request_body_bytes: int = 40 * 1024 * 1024
    requests_per_minute: int = 1200  # per API key
    auth_failures_per_minute: int = 30  # per client address
    pool_min_size: int = 1
    pool_max_size: int = 10
    retention_interval_seconds: float = 3600.0
    # send API (postwarden_admin_api.send)
    relay_host: str = "127.0.0.1"
    relay_port: int = 10026
    relay_max_attempts: int = 8
    relay_backoff_seconds: float = 30.0
    relay_workers: int = 8  # relay tasks, each with its own reused SMTP connection
    maillog_path: Path | None = None
    # The name the log's read position and receipts are kept under; unset: the host name.
    maillog_host: str | None = None
    # The syslog_name of the Postfix instance the relay submits to: only its lines are
    # read from maillog_path (another instance's queue ids are its own); unset: any's.
    maillog_syslog_name: str | None = None
    # The config directory of the Postfix instance the relay submits to, whose queue
    # `postqueue -c DIR -j` lists; unset: not asked (with several instances on a host,
    # plain `postqueue -j` could list another's queue).
    postfix_config_dir: Path | None = None
    # webhooks (postwarden_admin_api.webhooks)
    webhook_max_attempts: int = 8
    webhook_timeout_seconds: float = 10.0
    webhook_allowed_networks: tuple[str, ...] = field(default=())
    webhook_history_days: int = 30  # delivered/dead deliveries and their events kept this long
    webhook_prune_interval_seconds: float = 3600.0
    log_level: str = "INFO"
    # Accept `dev-admin-key` as admin from loopback peers until the first API key
    # exists. Off: on a shared host any local account could mint an admin key.
    development_key: bool = False

    @property
    def listen_host(self) -> str:
        host, _, _ = self.listen.rpartition(":")
        return host.strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


FIELDS = {f.name: f for f in dataclasses.fields(ServiceSettings)}
# The largest value each of these may take: the first four are compared with integer
# columns (a rate-limit count, a delivery's or message's attempts), and past an integer's
# range every authenticated request was a 500, every relay claim failed; the history's
# cutoff is a date (a timedelta of a billion days stopped the start with a traceback).
# The pool and the relay make a connection holder or a task for each at start (a billion
# filled memory), and a webhook's lease is its timeout (past an interval's range, no
# delivery could be claimed).
MAXIMA = {
    "requests_per_minute": 2**31 - 1,
    "auth_failures_per_minute": 2**31 - 1,
    "webhook_max_attempts": 2**31 - 1,
    "relay_max_attempts": 2**31 - 1,
    "webhook_history_days": 36500,
    "pool_max_size": 1000,  # past Postgres's max_connections (100 by default) anyway
    "relay_workers": 1000,
    "webhook_timeout_seconds": 3600,
}
# A Postfix syslog_name as it prefixes a program: "postfix", "postfix-out", "postfix/send".
_SYSLOG_NAME = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")
_KEY_EXPECTED = "expected 32 bytes as 64 hex digits or base64 (openssl rand -hex 32)"
# No value or an empty one (NAME= in an environment file) leaves these unset; given
# empty, these keep their meaning (no relay: sends are refused; no network allowed).
_UNSETS = frozenset(name for name, f in FIELDS.items() if str(f.type).endswith("| None"))
_EMPTY_MEANS = frozenset({"relay_host", "webhook_allowed_networks"})
_READS_AS = {"int": "a number", "float": "a number", "bool": "true or false"}


def _given(name: str, value: Any) -> None:
    """ValueError for what no setting takes (settings_source.given_value): no value, an
    empty one, a list or number for text, white space at the ends, a control character."""
    kind = str(FIELDS[name].type)
    empty_unsets = name in _UNSETS or name in _EMPTY_MEANS
    if kind == "tuple[str, ...]" and isinstance(value, list):
        for item in value:
            given_value(name, item, TEXT, empty_unsets=True)  # an empty item adds none
        return
    given_value(name, value, _READS_AS.get(kind, TEXT), none_unsets=name in _UNSETS,
                empty_unsets=empty_unsets)


def _convert(name: str, raw: Any) -> Any:
    kind = str(FIELDS[name].type)
    if kind in ("Secret", "Secret | None"):
        return Secret(raw)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise ValueError(f"{name}: expected true or false")
    if kind == "int":
        return finite_number(int, raw, name)
    if kind == "float":
        return finite_number(float, raw, name)
    if kind == "Path | None":
        return Path(raw)
    if kind == "tuple[str, ...]":
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        return tuple(item.strip() for item in items if item.strip())
    return raw


def _is_host(text: str) -> bool:
    """A name or address for asyncio.open_connection: ``host:port``, ``[v6]`` or a URL is
    not (an IPv6 address has colons of its own)."""
    if ":" in text:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            return False
        return True
    return text.isprintable() and not any(c.isspace() or c in "[]/@" for c in text)


def _is_listen(listen: str) -> bool:
    host, sep, port = listen.rpartition(":")
    # ASCII digits: ٨٠٢٥ (Arabic-Indic) was taken as 8025, and a URL to it (policy push)
    # is no URL.
    return bool(sep and host and port.isascii() and port.isdigit() and 0 < int(port) < 65536)


def _postfix_config_dir_problems(settings: ServiceSettings, unusable: Set[str]
                                 ) -> list[tuple[str, str]]:
    """Its queue is asked only about what the log follower read, of the Postfix the
    relay submits to: it needs both, and must be a Postfix config directory."""
    config_dir = settings.postfix_config_dir
    if config_dir is None or {"maillog_path", "relay_host"} & unusable:
        return []
    if settings.maillog_path is None or not settings.relay_host:
        return [("postfix_config_dir", "needs maillog_path and relay_host")]
    if not os.path.isfile(config_dir / "main.cf"):  # False, not raised, when unreadable
        return [("postfix_config_dir", f"{shown(str(config_dir))} holds no main.cf "
                                       "(expected a Postfix config directory)")]
    return []


def _validate(settings: ServiceSettings, unusable: Set[str]) -> list[tuple[str, str]]:
    """(setting, problem) for each value that converted but cannot work; none for those
    in ``unusable`` (refused, or not given where required), whose stand-ins (defaults)
    are not what the admin meant."""
    problems = []
    if (problem := dsn_problem(settings.database_url.reveal())) is not None:
        problems.append(("database_url", problem))
    if not _is_listen(settings.listen):
        problems.append(("listen", "expected HOST:PORT"))
    if settings.relay_port > 65535:  # below 1 is told with the counts below
        problems.append(("relay_port", "must be at most 65535"))
    if settings.relay_host and not _is_host(settings.relay_host):
        problems.append(("relay_host", "expected a host name or IP address without a port "
                                       "(the port goes in relay_port)"))
    for name in ("max_request_body_bytes", "requests_per_minute", "auth_failures_per_minute",
                 "pool_min_size", "pool_max_size", "relay_port", "relay_max_attempts",
                 "relay_workers", "webhook_max_attempts", "webhook_history_days",
                 "webhook_prune_interval_seconds"):
        if getattr(settings, name) < 1:
            problems.append((name, "must be at least 1"))
    for name, most in MAXIMA.items():
        if getattr(settings, name) > most:
            problems.append((name, f"must be at most {most}"))
    for name in ("retention_interval_seconds", "relay_backoff_seconds",
                 "webhook_timeout_seconds"):
        if getattr(settings, name) <= 0:
            problems.append((name, "must be more than 0"))
    if settings.pool_min_size > settings.pool_max_size and "pool_max_size" not in unusable:
        problems.append(("pool_min_size", "must not exceed pool_max_size"))
    if settings.maillog_host is not None and (
            not settings.maillog_host or not settings.maillog_host.isprintable()
            or any(c.isspace() for c in settings.maillog_host)):
        problems.append(("maillog_host", "expected a name without spaces"))
    if settings.maillog_syslog_name is not None and not _SYSLOG_NAME.fullmatch(
            settings.maillog_syslog_name):
        problems.append(("maillog_syslog_name", "expected a name such as postfix or "
                         "postfix-out"))
    problems += _postfix_config_dir_problems(settings, unusable)
    if settings.log_level.upper() not in LOG_LEVELS:
        problems.append(("log_level", f"expected one of {', '.join(LOG_LEVELS)}"))
    for network in settings.webhook_allowed_networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            problems.append(("webhook_allowed_networks", f"{shown(network)} is not a network"))
    return [(name, text) for name, text in problems if name not in unusable]


def _load_keys(values: dict[str, Any], raw: RawSettings) -> list[str]:
    """Read the key files into their keys and check every key; a problem for each bad one,
    naming the setting (and the file), never the key."""
    # Here, not at the top: secrets imports this module.
    from .secrets import BadSecretKey, parse_key_material  # noqa: PLC0415

    problems = []
    for key in ("secret_key", "previous_secret_key"):
        setting, path = f"{key}_file", values.get(f"{key}_file")
        if values.get(key) is None and path is not None:
            told = f"{setting}: {shown(str(path))}"  # cut: a path too may be kilobytes
            try:
                values[key] = Secret(Path(path).read_text(encoding="utf-8").strip())
            except OSError as exc:
                problems.append(raw.problem(
                    setting, f"{setting}: cannot read {shown(str(path))}: {exc.strerror}"))
                continue
            except UnicodeDecodeError:
                problems.append(raw.problem(setting, f"{told} is not text: {_KEY_EXPECTED}"))
                continue
        else:
            setting = told = key
        secret = values.get(key)
        if secret is None:
            continue
        try:
            parse_key_material(secret.reveal())
        except BadSecretKey:
            problems.append(raw.problem(setting, f"{told}: {_KEY_EXPECTED}"))
    return problems


def build_settings(values: Mapping[str, Any], sources: Mapping[str, str] | None = None,
                   *, read_keys: bool = True, refused: Set[str] = frozenset()
                   ) -> ServiceSettings:
    """Convert and validate raw values; every problem is reported at once, each led by
    where its value was set (``sources``: name -> ``FILE:LINE`` or variable). Without
    ``read_keys`` the key files are not read, nor the keys checked (left None): for the
    commands that need no key (migrate, keys), run where the key file is not.
    ``refused``: settings the file gave but that were refused already (told by the
    caller): not told again, nor checked against others."""
    raw = RawSettings(dict(values), dict(sources or {}))
    converted, problems = _converted(values, raw)
    unusable = set(values) - set(converted) | refused
    if "database_url" not in unusable and not values.get("database_url"):
        problems.insert(0, "database_url: required (or set POSTWARDEN_DATABASE_URL)")
        unusable.add("database_url")
    converted.setdefault("database_url", Secret(""))  # a stand-in, told above
    if read_keys:
        problems += _load_keys(converted, raw)
    else:
        converted.update(dict.fromkeys(("secret_key", "previous_secret_key")))
    settings = ServiceSettings(**converted)
    problems += [raw.problem(name, f"{name}: {text}")
                 for name, text in _validate(settings, unusable)]
    if problems:
        raise SettingsError(problems)
    return settings


def _converted(values: Mapping[str, Any], raw: RawSettings) -> tuple[dict[str, Any], list[str]]:
    """The values each setting takes, and the problems of those refused (an unknown
    name's too)."""
    converted: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in values.items():
        if name not in FIELDS:
            problems.append(raw.problem(name, f"{name}: unknown setting"))
            continue
        if name == "database_url" and not value:  # told as required
            continue
        unset = name in _UNSETS and value in (None, "")
        try:
            _given(name, value)
            converted[name] = None if unset else _convert(name, value)
        except ValueError as exc:  # the number's own words, as the milter's
            problems.append(raw.problem(name, str(exc)))
    return converted, problems


def listen_of(raw: RawSettings) -> str:
    """``listen`` alone, checked as a start checks it, for policy push, which reads no
    other setting (a CI machine has no database_url): listen with no value was pushed to
    http://None, one with a space at its start to "host  127.0.0.1"."""
    listen = raw.values.get("listen", FIELDS["listen"].default)
    try:
        _given("listen", listen)
    except ValueError as exc:
        raise SettingsError(raw.problem("listen", str(exc))) from None
    if not _is_listen(listen):
        raise SettingsError(raw.problem("listen", "listen: expected HOST:PORT"))
    return str(listen)


def stray_variables(environ: Mapping[str, str]) -> list[str]:
    """POSTWARDEN_ variables that look like a misspelt setting of the service, which it
    ignores; the milter's are not told (settings_source.misspelt_variables)."""
    return misspelt_variables(environ, FIELDS, "an admin service setting")


def load_settings(path: Path | None, environ: Mapping[str, str], *, read_keys: bool = True
                  ) -> ServiceSettings:
    raw = read_settings(path, environ, FIELDS)
    try:
        settings = build_settings(raw.values, raw.sources, read_keys=read_keys,
                                  refused=raw.refused)
    except SettingsError as exc:  # told with the file's own, all at once
        raise SettingsError([*raw.problems, *exc.problems]) from None
    if raw.problems:
        raise SettingsError(raw.problems)
    return settings
