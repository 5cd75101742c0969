"""The milter's settings: one frozen object, validated before the socket opens.

Values come from an optional YAML file and ``POSTWARDEN_<NAME>`` variables
(the environment wins, see :mod:`postwarden_policies.settings_source`). Every
check that can fail runs here, so a bad setting stops the process with one
line naming the setting instead of failing later on a live connection.
"""

from __future__ import annotations

import contextlib
import enum
import grp
import ipaddress
import os
import pwd
import re
import socket
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from postwarden_policies import SettingsError
from postwarden_policies.errors import shown
from postwarden_policies.settings_source import (
    LOG_LEVELS,
    TEXT,
    RawSettings,
    Secret,
    finite_number,
    given_value,
    misspelt_variables,
    quoted,
    read_settings,
)
from postwarden_store import dsn_problem

from .listener import unix_path
from .localretries import FILE_NAME as LOCAL_RETRIES_NAME

__all__ = ["FailAction", "MilterSettings", "Secret", "SettingsError", "SpoolFullAction", "convert",
           "load_settings"]

T = TypeVar("T")


class FailAction(enum.StrEnum):
    """What an internal error or a missed deadline answers."""

    TEMPFAIL = "tempfail"
    ACCEPT = "accept"
    REJECT = "reject"


class SpoolFullAction(enum.StrEnum):
    """What happens when the audit spool reaches ``spool_max_bytes``."""

    TEMPFAIL = "tempfail"  # refuse new mail (4xx) until the spool drains
    DROP = "drop"  # keep accepting mail, count and log the lost events


@dataclass(frozen=True, slots=True)
class MilterSettings:
    policy_dir: Path | None = None
    milter_socket: str = "inet:8899@127.0.0.1"
    # A unix socket's permissions, set once libmilter has created it: Postfix's
    # smtpd must be able to connect. The socket's group is its directory's when
    # that is setgid (contrib/systemd/README.md: a group for the socket alone).
    milter_socket_mode: int = 0o660
    database_url: Secret | None = None
    # The systemd unit's StateDirectory (ProtectSystem=strict leaves /var/spool read-only).
    spool_dir: Path = Path("/var/lib/postwarden/spool")
    fail_action: FailAction = FailAction.TEMPFAIL
    metrics_listen: str = ""  # "HOST:PORT"; empty turns the endpoint off
    instance_name: str = ""  # empty: the host name
    id_header: str = "X-Postwarden-Id"  # empty turns the header off
    # Worker processes sharing the socket (one Python process uses about one core).
    # max_concurrency, audit_queue_size and spool_max_bytes are for the whole
    # milter: each worker gets its share of the first two, and all their spools
    # together count against spool_max_bytes.
    processes: int = 1
    # Transactions whose content the milter holds (first header to end of message); past
    # it a new MAIL FROM gets 421 4.3.2 while those running finish. Idle SMTP sessions and
    # transactions still in their envelope do not count: it bounds the work and memory
    # (bodies, evaluations), and Postfix bounds the sessions.
    max_concurrency: int = 64
    message_timeout_seconds: float = 60.0
    # Only bodies still arriving are bounded by this (max_concurrency x 4 MiB):
    # at end of message the whole message is in memory for parsing anyway, and
    # spilling a 2 MB body cost the milter ~4 ms of CPU, the kernel as much again.
    body_memory_threshold: int = 4 * 1024 * 1024
    spool_max_bytes: int = 1024 * 1024 * 1024
    spool_full_action: SpoolFullAction = SpoolFullAction.TEMPFAIL
    duplicate_window_seconds: float = 3600.0  # 0 turns duplicate detection off
    # Passes of a sendmail(1) submission tempfailed at end of message before the next is
    # held (localretries: pickup retries it every 60 s, forever); 0: retried as long.
    local_retry_passes: int = 60
    audit_queue_size: int = 10000
    log_level: str = "INFO"
    policy_poll_seconds: float = 2.0  # policy_dir change polling; 0 turns it off

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        if not self.metrics_listen:
            return None
        host, _, port = self.metrics_listen.rpartition(":")
        return host.strip("[]"), int(port)


MAX_PROCESSES = 64
# sun_path holds 108 bytes with the terminating NUL: libmilter refuses a longer path,
# saying only that it cannot open the socket.
MAX_UNIX_SOCKET_PATH = 107
POSTFIX_CHROOT = Path("/var/spool/postfix")  # Debian's queue_directory
# What the systemd unit's ProtectHome=yes hides (contrib/systemd): a directory there is
# none to the milter it runs, whatever `ls` shows its admin.
HIDDEN_BY_UNIT = (Path("/home"), Path("/root"), Path("/run/user"))
# Bounds of the *_seconds settings. threading waits refuse a timeout past
# threading.TIMEOUT_MAX (about 292 years): a larger poll killed the reload thread.
MAX_POLL_SECONDS = 86400.0  # a day
# Below, an idle milter spends much of a core listing policy_dir (every microsecond:
# 44 %), holding the GIL mail needs; and "unchanged for a whole poll" waits out no checkout.
MIN_POLL_SECONDS = 0.1
MAX_MESSAGE_TIMEOUT_SECONDS = 3600.0  # an hour: 60 times the default
# Below, a message past the inline size (256 KiB), worked on beside progress replies, is
# given up before its parsing ends: every one got fail_action (tempfail), for ever.
MIN_MESSAGE_TIMEOUT_SECONDS = 1.0
MAX_DUPLICATE_WINDOW_SECONDS = 7 * 86400.0  # past Postfix's 5-day queue lifetime
# Below (and not 0, which turns detection off), a window ends before any redelivery
# comes back: detection looked on and caught nothing.
MIN_DUPLICATE_WINDOW_SECONDS = 1.0
# Below, nearly every body, a short one's too, is spilled to a temporary file: a file
# per message for nothing.
MIN_BODY_MEMORY_THRESHOLD = 1024
# Below, a minute's outage of Postgres (a spooled event is about 1 KiB) fills the spool,
# and then all mail is refused (tempfail) or its audit dropped.
MIN_SPOOL_MAX_BYTES = 1024 * 1024
# Below, a burst of a few messages fills the queue while the writer is in one commit, and
# then mail is refused (tempfail) or its audit dropped. Above MAX_PROCESSES: every worker
# has a share.
MIN_AUDIT_QUEUE_SIZE = 100
# The spool holds message metadata (senders, recipients, subjects): the milter's alone.
SPOOL_DIR_MODE = 0o700
# The policy set a start falls back on while Postgres is unreachable (reload).
LAST_GOOD_NAME = "policies-last-good.json"
SETTING_NAMES = tuple(f.name for f in fields(MilterSettings))

# ASCII digits (\d takes others, which int() reads and libmilter does not: "cannot serve").
_SOCKET_INET = re.compile(r"^inet6?:([0-9]{1,5})(?:@(\S+))?$")
_SOCKET_UNIX = re.compile(r"^(?:unix|local):(/\S+)$")
_POSTFIX_INET = re.compile(r"^(inet6?):\[?([^@\s\]]+?)\]?:([0-9]{1,5})$")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext
# A field name cannot be folded: past RFC 5322's 78-character line less ": ", the header
# would be longer than a line should be (and a megabyte name was taken).
MAX_HEADER_NAME = 76


def _check_port(text: str, name: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"{name}: port {port} out of range 1-65535")
    return port


def _every_interface(value: str) -> ValueError:
    """libmilter's inet:PORT listens on every interface: whoever reaches the port could
    write audit rows, and take up max_concurrency (Postfix's mail then refused 421)."""
    inet6 = value.startswith("inet6")
    loopback = "::1" if inet6 else "127.0.0.1"
    every = "::" if inet6 else "0.0.0.0"  # noqa: S104 - told, not bound
    return ValueError(f"milter_socket: {value!r} names no address, which listens on every "
                      f"interface: write {value}@{loopback} for loopback ({value}@{every} "
                      "if every interface is meant)")


def _ip_family(host: str) -> str | None:
    """``inet`` or ``inet6``, libmilter's family for an address (brackets allowed); None
    for a host name."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return "inet6" if address.version == 6 else "inet"


def _chroot_hint(path: str) -> str:
    """main.cf's unix:/postwarden/milter.sock is relative to Postfix's chroot: copied here,
    its directory is missing, and the one meant is under the chroot."""
    meant = POSTFIX_CHROOT / path.lstrip("/")
    if not meant.parent.is_dir():
        return ""
    return (f" (main.cf names the socket relative to Postfix's chroot, {POSTFIX_CHROOT}: "
            f"here it is unix:{meant})")


def _whose(path: Path) -> str:
    """Who this process is and whose ``path`` is, for a directory it may not write: a
    milter run as another user than the unit's (root's, by hand), or a directory made for
    another."""
    try:
        info = path.stat()
    except OSError:
        return ""
    return (f" by user {_user(os.geteuid())} (owner {_user(info.st_uid)}, group "
            f"{_group(info.st_gid)}, mode {stat.S_IMODE(info.st_mode):04o})")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _socket(value: str) -> str:
    match = _SOCKET_INET.match(value)
    if match:
        port, host = _check_port(match.group(1), "milter_socket"), match.group(2)
        if host is None:
            raise _every_interface(value)
        family = _ip_family(host)
        if family is not None and not value.startswith(f"{family}:"):
            # Else `check` passes and the start fails ("Address family for hostname
            # not supported"): inet is IPv4 only, inet6 IPv6 only.
            raise ValueError(f"milter_socket: {host} is an IPv{6 if family == 'inet6' else 4} "
                             f"address: write {family}:{port}@{host.strip('[]')}")
        return value
    if _SOCKET_UNIX.match(value):
        path = value.split(":", 1)[1]
        length = len(os.fsencode(path))
        if length > MAX_UNIX_SOCKET_PATH:
            raise ValueError(f"milter_socket: the path is {length} bytes long, a unix "
                             f"socket's at most {MAX_UNIX_SOCKET_PATH}")
        parent = Path(path).parent
        if not parent.is_dir():
            raise ValueError(f"milter_socket: directory {parent} does not exist"
                             + _chroot_hint(path))
        if not os.access(parent, os.W_OK | os.X_OK):
            # Else `check` passes and the start fails in libmilter ("cannot opensocket").
            raise ValueError(f"milter_socket: directory {parent} is not writable"
                             f"{_whose(parent)}: the milter creates the socket there")
        with contextlib.suppress(OSError):  # nothing there (or not ours to look at)
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                # Else `check` passes and the start fails: libmilter replaces only a socket.
                raise ValueError(f"milter_socket: {path} is there and is not a socket")
        return value
    postfix = _POSTFIX_INET.match(value)  # main.cf's spelling, copied from smtpd_milters
    raise ValueError(
        f"milter_socket: {shown(value)} is not inet:PORT@HOST, inet6:PORT@HOST or unix:/PATH"
        + (f" (Postfix's {postfix[1]}:HOST:PORT is "
           f"{_ip_family(postfix[2]) or postfix[1]}:{postfix[3]}@{postfix[2]} here)"
           if postfix else ""))


def _socket_mode(value: Any) -> int:
    # YAML reads an unquoted 0660 as the octal 432 and 660 as decimal: only text is clear.
    if not isinstance(value, str) or not re.fullmatch(r"0?[0-7]{3}", value):
        raise ValueError(
            f"milter_socket_mode: {quoted(value)} is not an octal mode such as '0660' "
            "(quote it in YAML)"
        )
    return int(value, 8)


def _listen(value: str) -> str:
    if not value:
        return ""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()):
        raise ValueError(f"metrics_listen: {shown(value)} is not HOST:PORT")
    _check_port(port, "metrics_listen")
    return value


def _positive(kind: type[T], name: str, *, allow_zero: bool = False,
              least: float | None = None, most: float | None = None,
              zero_turns_off: str = "") -> Callable[[Any], T]:
    """A number setting's converter: above 0 (or 0, ``allow_zero``), from ``least`` (0
    aside) to ``most``. ``zero_turns_off``: what 0 turns off, told with ``least``."""
    def convert(value: Any) -> T:
        number = finite_number(kind, value, name)
        if number < 0 or (number == 0 and not allow_zero):  # type: ignore[operator]
            raise ValueError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, "
                             f"got {quoted(value)}")
        if least is not None and 0 < number < least:  # type: ignore[operator]
            off = f" (0 turns {zero_turns_off} off)" if zero_turns_off else ""
            raise ValueError(f"{name}: at least {_bound(least)}{off}, got {quoted(value)}")
        if most is not None and number > most:  # type: ignore[operator]
            raise ValueError(f"{name}: at most {_bound(most)}, got {quoted(value)}")
        return number

    return convert


def _bound(number: float) -> str:
    """A bound as written: 1048576, not :g's 1.04858e+06; 86400, not 86400.0."""
    return f"{number:g}" if isinstance(number, float) else str(number)


def _choice(kind: type[enum.StrEnum], name: str) -> Callable[[Any], Any]:
    def convert(value: str) -> Any:
        try:
            return kind(value.lower())
        except ValueError:
            choices = " | ".join(member.value for member in kind)
            raise ValueError(f"{name}: {shown(value)} is not one of {choices}") from None

    return convert


def _id_header(value: str) -> str:
    if value and not _HEADER_NAME.match(value):
        raise ValueError(f"id_header: {shown(value)} is not a valid header name")
    if len(value) > MAX_HEADER_NAME:
        raise ValueError(f"id_header: {len(value)} characters long, a header name at most "
                         f"{MAX_HEADER_NAME}")
    return value


def _log_level(value: str) -> str:
    text = value.upper()
    if text not in LOG_LEVELS:
        raise ValueError(f"log_level: {shown(value)} is not one of {', '.join(LOG_LEVELS)}")
    return text


def _absolute(name: str) -> Callable[[str], Path]:
    """A directory's path, in full: a relative one is read from the working directory,
    which is / for the systemd unit and elsewhere for a check run by hand (it passed
    `policy_dir: policies` in /etc/postwarden, and the start did not find them)."""
    def convert(value: str) -> Path:
        if not Path(value).is_absolute():
            raise ValueError(f"{name}: {shown(value)} is a relative path: write it in full "
                             "(the milter reads it from its working directory, / under "
                             "systemd)")
        return Path(value)

    return convert


def _optional_path(value: str | None) -> Path | None:
    return _absolute("policy_dir")(value) if value else None




def _database_url(value: str | None) -> Secret | None:
    if not value:
        return None
    problem = dsn_problem(value)
    if problem is not None:
        raise ValueError(f"database_url: {problem}")
    return Secret(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "policy_dir": _optional_path,
    "milter_socket": _socket,
    "milter_socket_mode": _socket_mode,
    "database_url": _database_url,
    "spool_dir": _absolute("spool_dir"),  # never empty (convert)
    "fail_action": _choice(FailAction, "fail_action"),
    "metrics_listen": lambda v: _listen(v or ""),
    "instance_name": lambda v: v or "",
    "id_header": _id_header,
    "processes": _positive(int, "processes", most=MAX_PROCESSES),
    "max_concurrency": _positive(int, "max_concurrency"),
    "message_timeout_seconds": _positive(float, "message_timeout_seconds",
                                         least=MIN_MESSAGE_TIMEOUT_SECONDS,
                                         most=MAX_MESSAGE_TIMEOUT_SECONDS),
    "body_memory_threshold": _positive(int, "body_memory_threshold",
                                       least=MIN_BODY_MEMORY_THRESHOLD),
    "spool_max_bytes": _positive(int, "spool_max_bytes", least=MIN_SPOOL_MAX_BYTES),
    "spool_full_action": _choice(SpoolFullAction, "spool_full_action"),
    "duplicate_window_seconds": _positive(float, "duplicate_window_seconds", allow_zero=True,
                                          least=MIN_DUPLICATE_WINDOW_SECONDS,
                                          zero_turns_off="detection",
                                          most=MAX_DUPLICATE_WINDOW_SECONDS),
    "local_retry_passes": _positive(int, "local_retry_passes", allow_zero=True),
    "audit_queue_size": _positive(int, "audit_queue_size", least=MIN_AUDIT_QUEUE_SIZE),
    "log_level": _log_level,
    "policy_poll_seconds": _positive(float, "policy_poll_seconds", allow_zero=True,
                                     least=MIN_POLL_SECONDS, most=MAX_POLL_SECONDS,
                                     zero_turns_off="polling"),
}


# A key with nothing after it (YAML's null) leaves these unset (no policy_dir, no
# database, no metrics endpoint, the host name); any other it gives no value, said so
# (the converters read it as the text or number "None": "None is not a number").
_NULL_UNSETS = frozenset({"policy_dir", "database_url", "metrics_listen", "instance_name"})
_NO_VALUE_HINTS = {"id_header": 'write "" to turn the header off, or remove the line for '
                                "the default"}
# Empty ("" in the file, NAME= in an environment file) these turn off or leave unset
# what the setting names; any other it gives no value, said so (it was "'' is not a
# number", "'' is not one of tempfail | accept | reject").
_EMPTY_UNSETS = _NULL_UNSETS | {"id_header"}


# Written as text: another YAML value (a number, true/false, a list) is refused, not
# made text ("['a']" for a list). milter_socket_mode says why it wants quotes itself.
_TEXT = frozenset({"policy_dir", "milter_socket", "database_url", "spool_dir", "fail_action",
                   "metrics_listen", "instance_name", "id_header", "spool_full_action",
                   "log_level"})


def convert(name: str, value: Any) -> Any:
    """Setting ``name``'s value from what was given; ValueError naming the setting."""
    given_value(name, value, TEXT if name in _TEXT else "a number",
                none_unsets=name in _NULL_UNSETS, empty_unsets=name in _EMPTY_UNSETS,
                no_value_hint=_NO_VALUE_HINTS.get(name, "remove the line for the default"))
    return _CONVERTERS[name](value)


def _check_shares(settings: MilterSettings, raw: RawSettings, refused: set[str]
                  ) -> list[str]:
    """Each worker process gets its share of max_concurrency: below ``processes`` it
    would leave a worker none (given one each, the milter held more than the bound said).
    (audit_queue_size's least is above MAX_PROCESSES.) ``refused``: settings whose value
    was refused, not compared."""
    name, bound = "max_concurrency", settings.max_concurrency
    if {name, "processes"} & refused or bound >= settings.processes:
        return []
    return [raw.problem(name, f"{name}: {bound} is below processes ({settings.processes}): "
                        f"each worker process needs at least one; raise {name} or lower "
                        "processes")]


def _check_ports(settings: MilterSettings, raw: RawSettings, refused: set[str]) -> list[str]:
    """metrics_listen on milter_socket's own address and port: the endpoint, opened
    first, held it, and the start failed as on a port another process holds (exit 1,
    retried for ever); check passed it."""
    milter, metrics = _inet_listen(settings.milter_socket), settings.metrics_address
    if ({"milter_socket", "metrics_listen"} & refused or milter is None or metrics is None
            or milter[1] != metrics[1]):
        return []
    ours, theirs = _addresses(milter[0]), _addresses(metrics[0])
    if not ours & theirs and not any(address.is_unspecified for address in ours | theirs):
        return []
    return [raw.problem("metrics_listen", f"metrics_listen: port {metrics[1]} is "
                        f"milter_socket's ({settings.milter_socket}): give the metrics "
                        "endpoint a port of its own")]


def _addresses(host: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses ``host`` resolves to (none where it does not)."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return set()
    return {ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in found}


def _inet_listen(connection: str) -> tuple[str, int] | None:
    """The host and port of libmilter's inet:PORT@HOST (inet6:); None for a unix socket."""
    match = _SOCKET_INET.match(connection)
    return (match[2].strip("[]"), int(match[1])) if match and match[2] else None


def _check_dirs(settings: MilterSettings, raw: RawSettings, create_spool_dir: bool,
                refused: set[str]) -> list[str]:
    """policy_dir's and spool_dir's problems; of those in ``refused`` (their value was
    refused) none: the defaults standing in for them are not what the admin meant."""
    if settings.policy_dir is None and settings.database_url is None:
        if {"policy_dir", "database_url"} & refused:
            return []
        return ["policy_dir: set policy_dir or database_url (policies come from one)"]
    problems = []
    if settings.policy_dir is not None:
        problems += _policy_dir_problems(settings.policy_dir, raw)
    if "spool_dir" in refused:
        return problems
    spool_dir = settings.spool_dir
    if create_spool_dir:
        try:
            spool_dir.mkdir(SPOOL_DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            problems.append(raw.problem(
                "spool_dir", f"spool_dir: cannot create {_path(spool_dir)}: {exc.strerror}"))
            return problems
    # Itself, or (not created: check) the directory the milter would create it in.
    try:
        existing = next(path for path in (spool_dir, *spool_dir.parents) if path.exists())
    except OSError as exc:  # a parent this user may not search, a name too long
        problems.append(raw.problem("spool_dir", f"spool_dir: cannot read "
                                    f"{_path(exc.filename)}: {exc.strerror}"))
        return problems
    if not existing.is_dir():
        problems.append(raw.problem("spool_dir",
                                    f"spool_dir: {_path(existing)} is not a directory"))
    elif not os.access(existing, os.W_OK | os.X_OK):
        problems.append(raw.problem("spool_dir", f"spool_dir: {_path(existing)} is not "
                                    f"writable{_whose(existing)}"))
    elif existing == spool_dir:
        problems.extend(raw.problem("spool_dir", f"spool_dir: cannot read and write "
                                    f"{_path(path)} (left by a run as another user?)")
                        for path in _foreign_spool_files(settings))
    return problems


def _policy_dir_problems(policy_dir: Path, raw: RawSettings) -> list[str]:
    try:
        if policy_dir.is_dir():
            return []
    except OSError as exc:  # a name too long: is_dir() raises, not False
        return [raw.problem("policy_dir", f"policy_dir: cannot read {_path(policy_dir)}: "
                            f"{exc.strerror}")]
    return [raw.problem("policy_dir", f"policy_dir: {_path(policy_dir)} is not a directory"
                        + _hidden_hint(policy_dir))]


def _path(path: Path | str) -> str:
    """A path in a problem: quoted and cut as values are (a path too may be kilobytes)."""
    return shown(str(path))


def _hidden_hint(path: Path) -> str:
    """A checkout in a home directory is there for its admin and not for the unit's milter
    (or the `check` of its reload)."""
    hidden = next((place for place in HIDDEN_BY_UNIT if place in path.parents), None)
    if hidden is None:
        return ""
    return (f" (the systemd unit's ProtectHome=yes hides {hidden} from the milter: keep "
            "the policies outside /home, /root and /run/user, e.g. in /etc/postwarden)")


def _foreign_spool_files(settings: MilterSettings) -> list[Path]:
    """Files of spool_dir a start reads that this user may not read and write (a milter
    run by hand as root leaves root's, mode 0600): spools and journals, which failed the
    start with a traceback; with policies from the database the last good set, which
    failed a start in an outage of Postgres, blaming the database; and the counts of
    local_retry_passes, which then counted nothing, an error logged at every pass."""
    patterns = ["audit-*.jsonl", *([LAST_GOOD_NAME] if settings.policy_dir is None else []),
                *([LOCAL_RETRIES_NAME] if settings.local_retry_passes else [])]
    return sorted(path for pattern in patterns for path in settings.spool_dir.glob(pattern)
                  if not os.access(path, os.R_OK | os.W_OK))


def settings_warnings(settings: MilterSettings, environ: Mapping[str, str]) -> list[str]:
    """What check prints and a start logs of the settings, refusing nothing: variables that
    look like a misspelt setting, and a unix socket every local user, or only the
    milter's, may connect to."""
    return [*stray_variables(environ), *_socket_mode_warnings(settings)]


def _socket_mode_warnings(settings: MilterSettings) -> list[str]:
    """A unix socket's mode writable by others (connecting takes write permission): any
    local user could talk to the milter; or by its owner alone (0600, 0644): Postfix,
    another user, could not, and applied milter_default_action to all mail. Warned of,
    not refused: the socket's directory may keep others out, and a loopback port (inet:)
    is open to them all the same; Postfix may be the milter's own user."""
    mode = settings.milter_socket_mode
    if unix_path(settings.milter_socket) is None:
        return []
    if mode & stat.S_IWOTH:
        return [f"milter_socket_mode {mode:04o} lets every local user connect to the milter "
                "(have it log, hold transactions, spend its CPU), not only Postfix: use 0660 "
                "and put Postfix in the socket's group (contrib/systemd/README.md)"]
    if not mode & stat.S_IWGRP:
        return [f"milter_socket_mode {mode:04o} lets no user but the milter's connect "
                "(connecting takes write permission): Postfix, run as another, is refused "
                "and applies milter_default_action to all mail; use 0660 and put Postfix in "
                "the socket's group (contrib/systemd/README.md)"]
    return []


def stray_variables(environ: Mapping[str, str]) -> list[str]:
    """POSTWARDEN_ variables that look like a misspelt milter setting, or POSTWARDEN_CONFIG
    (a misspelt one left the milter without its settings file, unsaid), which the milter
    ignores; the admin service's are not told (settings_source.misspelt_variables)."""
    return misspelt_variables(environ, (*SETTING_NAMES, "config"), "a milter setting")


def load_settings(path: Path | None, environ: Mapping[str, str], *,
                  create_spool_dir: bool = True) -> MilterSettings:
    """Read, convert and check every setting; raise SettingsError naming each culprit
    and where it was set. ``create_spool_dir=False`` (check) leaves a missing spool_dir
    to the milter: made by whoever checks (root), it would be theirs, and the milter's
    user could not write it."""
    raw = read_settings(path, environ, SETTING_NAMES)
    values: dict[str, Any] = {}
    problems = list(raw.problems)
    for name, value in raw.values.items():
        try:
            values[name] = convert(name, value)
        except ValueError as exc:
            problems.append(raw.problem(name, str(exc)))
    if not values.get("instance_name"):
        values["instance_name"] = socket.gethostname()
    settings = MilterSettings(**values)
    # Checked beside values refused, so that every problem is told at once; spool_dir
    # is then not created: a start refused makes nothing.
    refused = set(raw.values) - set(values) | raw.refused
    problems += (_check_shares(settings, raw, refused) + _check_ports(settings, raw, refused)
                 + _check_dirs(settings, raw, create_spool_dir and not problems, refused))
    if problems:
        raise SettingsError(problems)
    return settings
