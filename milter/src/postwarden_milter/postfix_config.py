"""What ``postwarden-milter check`` compares with the Postfix on this host, through
postconf(1), when there is one (``MAIL_CONFIG`` names another instance's directory, as
for Postfix's own commands): main.cf's settings, and master.cf's ``-o`` overrides of
smtputf8_enable, a warning each, never a refusal (the milter may serve a Postfix
elsewhere, on TCP).

A milter list (smtpd_milters, non_smtpd_milters, or their ``-o`` overrides) that names
no milter on the milter's socket has Postfix send it no mail: a path or port mistyped.
Postfix's cleanup drops a recipient repeated in one message only among the first
``duplicate_filter_limit`` it remembers (1000 by default; 0: all). The milter counts a
repeated recipient once wherever it comes (session.recipient_key), so a policy allowing
more recipients than that lets a client list one mailbox again past them: the milter
counts it once, Postfix delivers it a copy per repeat.

A client an XCLIENT proxy names at localhost without its port looks like the connection
cleanup makes up for a sendmail(1) submission, but for ``{daemon_port}``
(handler.LOCAL_SUBMISSION), which Postfix sends only when milter_connect_macros lists it.

With smtputf8_enable, Postfix keeps one of two recipients differing only in Unicode case;
the milter counts them once only where MAIL FROM said SMTPUTF8 (a sendmail(1) submission's
never does) or the ``{smtputf8_enable}`` macro says yes (handler.SMTPUTF8_ENABLE), which
Postfix sends only when milter_mail_macros lists it and milter_macro_defaults gives it.
For SMTP mail that is smtpd's value, while its cleanup (cleanup_service_name) keeps the
recipients: a master.cf override giving one another value than the other (``-o
smtputf8_enable=no`` on smtpd alone) has them fold Unicode case apart.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

from postwarden_policies import PolicySet

from .handler import SMTPUTF8_ENABLE
from .listener import inet_port, unix_path

POSTCONF_TIMEOUT = 10.0
# postconf lives in sbin, which the milter user's PATH may lack.
SBIN = os.pathsep.join(("/usr/sbin", "/usr/local/sbin"))
CONFIG_DIRECTORY = "/etc/postfix"  # Postfix's default, without MAIL_CONFIG
ASKED = ("duplicate_filter_limit", "smtpd_authorized_xclient_hosts", "milter_connect_macros",
         "smtputf8_enable", "milter_mail_macros", "milter_macro_defaults",
         "cleanup_service_name", "smtpd_milters", "non_smtpd_milters", "queue_directory")
MILTER_LISTS = ("smtpd_milters", "non_smtpd_milters")
_MILTER_ENTRY = re.compile(r"\{\s*([^\s,}]+)[^}]*\}|([^\s,{}]+)")
# A milter_macro_defaults entry for it: name=value or {name=value}, the name with or
# without braces.
_SMTPUTF8_DEFAULT = re.compile(r"(?:^|[\s,{])\{?smtputf8_enable\}?\s*=")


def postfix_warnings(policy_set: PolicySet | None, milter_socket: str) -> list[str]:
    """What this host's Postfix is set up to get wrong with the milter (``policy_set``:
    the set a start would run, None where that is not known; ``milter_socket``: where it
    listens); none when postconf cannot say."""
    values = postconf(*ASKED)
    if values is None:
        return []
    (duplicate_limit, xclient_hosts, connect_macros, smtputf8, mail_macros, defaults,
     cleanup, smtpd_milters, non_smtpd_milters, queue_directory) = values
    overrides = _master_overrides()  # postconf -Px once, for both checks that read it
    warnings = _unnamed_socket(milter_socket, [smtpd_milters, non_smtpd_milters],
                               overrides, queue_directory)
    if xclient_hosts.strip() and "{daemon_port}" not in connect_macros.split():
        warnings.append(
            "milter_connect_macros lacks {daemon_port}, with smtpd_authorized_xclient_hosts "
            "set: a client an XCLIENT proxy names at localhost without its port is taken "
            "for a sendmail(1) submission (contrib/postfix/main.cf.snippet)")
    if (smtputf8.lower() == "yes" and _counts_recipients(policy_set)
            and not _sends_smtputf8_macro(mail_macros, defaults)):
        warnings.append(
            "milter_mail_macros or milter_macro_defaults lacks {smtputf8_enable}: two "
            "recipients differing only in Unicode case, which Postfix keeps once, count "
            "twice against max_recipients in mail submitted with sendmail(1) "
            "(contrib/postfix/main.cf.snippet)")
    if _counts_recipients(policy_set):
        warnings += _smtputf8_apart(smtputf8, cleanup, overrides)
    if policy_set is not None and duplicate_limit.isdigit():
        warnings += _duplicate_filter_warnings(policy_set, int(duplicate_limit))
    return warnings


def _unnamed_socket(milter_socket: str, milters: list[str],
                    overrides: dict[str, dict[str, str]], queue_directory: str) -> list[str]:
    """A line when no milter list of main.cf (``milters``) nor of a master.cf override
    (``overrides``, :func:`_master_overrides`) names the milter's socket: Postfix sends
    it no mail (a typo in the path or port, a unix socket named without its chroot). A
    TCP socket on another address than loopback is left alone: it may serve a Postfix
    elsewhere."""
    path, port = unix_path(milter_socket), inet_port(milter_socket)
    if path is None and not _on_loopback(milter_socket):
        return []
    overridden = [value for parameters in overrides.values()
                  for name, value in parameters.items() if name in MILTER_LISTS]
    named = list(dict.fromkeys(entry for value in (*milters, *overridden)
                               for entry in _milter_entries(value)))
    chroot = Path(queue_directory or "/var/spool/postfix")
    if any(_names(entry, path, port, chroot) for entry in named):
        return []
    spelt = (f"unix:/{Path(path).relative_to(chroot)}" if path and chroot in Path(path).parents
             else f"unix:{path}" if path else
             f"inet:{_postfix_host(milter_socket.partition('@')[2])}:{port}")
    listed = f" (they name {', '.join(named)})" if named else ""
    return [f"main.cf: neither smtpd_milters nor non_smtpd_milters names the milter's socket "
            f"{milter_socket}{listed}: Postfix sends it no mail; name it there as {spelt} "
            "(README, Adding it to Postfix)"]


def _milter_entries(value: str) -> list[str]:
    """The milters a milter list names, separated by white space or commas: of
    ``{ inet:host:port, option = value }`` its first word."""
    return [braced or word for braced, word in _MILTER_ENTRY.findall(value)]


def _names(entry: str, path: str | None, port: int | None, chroot: Path) -> bool:
    """Whether Postfix's ``entry`` (unix:PATH, inet:HOST:PORT) is the milter's socket: a
    path as given or inside Postfix's chroot, a TCP port whatever the host is called."""
    kind, _, rest = entry.partition(":")
    if path is not None and kind in ("unix", "local"):
        return os.path.normpath(path) in (os.path.normpath(rest),
                                          os.path.normpath(f"{chroot}/{rest}"))
    return port is not None and kind == "inet" and rest.rpartition(":")[2] == str(port)


def _on_loopback(milter_socket: str) -> bool:
    host = milter_socket.partition("@")[2].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _postfix_host(host: str) -> str:
    """A host as Postfix writes it in inet:HOST:PORT: an IPv6 address in brackets."""
    host = host.strip("[]")
    return f"[{host}]" if ":" in host else host


def _sends_smtputf8_macro(mail_macros: str, defaults: str) -> bool:
    """Whether Postfix sends the milter {smtputf8_enable} at MAIL FROM: listed in
    milter_mail_macros, and given a value by milter_macro_defaults."""
    return SMTPUTF8_ENABLE in mail_macros.split() and bool(_SMTPUTF8_DEFAULT.search(defaults))


def _smtputf8_apart(smtputf8: str, cleanup: str, overrides: dict[str, dict[str, str]]
                    ) -> list[str]:
    """One line per smtpd service of master.cf whose smtputf8_enable (main.cf's
    ``smtputf8``, or its ``-o`` override in ``overrides``) is not that of the cleanup
    service it hands mail to (main.cf's ``cleanup``, or its override of
    cleanup_service_name)."""
    services = _master_services()

    def setting(service: str, name: str, default: str) -> str:
        return overrides.get(service, {}).get(name, default)

    warnings = []
    for service, command in services.items():
        hands_to = f"{setting(service, 'cleanup_service_name', cleanup)}/unix"
        if command != "smtpd" or services.get(hands_to) != "cleanup":
            continue
        ours, theirs = (setting(name, "smtputf8_enable", smtputf8).lower()
                        for name in (service, hands_to))
        if ours != theirs:
            warnings.append(
                f"master.cf: smtputf8_enable is {ours} for {service} (smtpd) but {theirs} for "
                f"{hands_to} (its cleanup): the milter folds Unicode case in recipients as "
                f"smtpd's says, Postfix keeps them as cleanup's, so two differing only in "
                f"case count {'once' if ours == 'yes' else 'twice'} against max_recipients "
                f"where Postfix delivers {'two' if ours == 'yes' else 'one'}; give both the "
                f"same smtputf8_enable")
    return warnings


def _master_services() -> dict[str, str]:
    """master.cf's services, as name/type, and the command each runs (postconf -M)."""
    entries = (line.split() for line in (_postconf("-M") or "").splitlines())
    return {f"{fields[0]}/{fields[1]}": fields[7] for fields in entries if len(fields) > 7}


def _master_overrides() -> dict[str, dict[str, str]]:
    """master.cf's ``-o`` overrides, $name expanded, by service (name/type) and
    parameter (postconf -Px: one "name/type/parameter = value" a line)."""
    overrides: dict[str, dict[str, str]] = {}
    for line in (_postconf("-Px") or "").splitlines():
        key, _, value = line.partition(" = ")
        service, _, parameter = key.rpartition("/")
        overrides.setdefault(service, {})[parameter] = value
    return overrides


def _counts_recipients(policy_set: PolicySet | None) -> bool:
    """Whether an enforce-mode policy of ``policy_set`` limits recipients (None: unknown,
    taken as one that does)."""
    return policy_set is None or any(not policy.report_only and policy.limits.max_recipients
                                     for policy in policy_set.policies)


def _duplicate_filter_warnings(policy_set: PolicySet, limit: int) -> list[str]:
    """One line per enforce-mode policy whose max_recipients is above ``limit``."""
    if not limit:  # 0: every recipient remembered
        return []
    return [f"policy {policy.name}: max_recipients {most} is above Postfix's "
            f"duplicate_filter_limit ({limit}): past {limit} recipients Postfix delivers a "
            f"repeated one again, which the milter counts once; set duplicate_filter_limit "
            f"to {most} or more (or 0)"
            for policy in policy_set.policies
            if not policy.report_only and (most := policy.limits.max_recipients or 0) > limit]


def postconf(*names: str) -> list[str] | None:
    """The values of main.cf's ``names`` as this host's postconf gives them; None without
    postconf or a main.cf for it, or when it fails."""
    output = _postconf("-xh", *names)
    values = None if output is None else output.split("\n")[: len(names)]
    return values if values is not None and len(values) == len(names) else None


def _postconf(*arguments: str) -> str | None:
    """What this host's postconf writes given ``arguments``; None without postconf or a
    main.cf for it (postconf would sleep a second on its fatal error), or when it fails."""
    directory = Path(os.environ.get("MAIL_CONFIG") or CONFIG_DIRECTORY)
    path = os.pathsep.join((os.environ.get("PATH", ""), SBIN))
    program = shutil.which("postconf", path=path)
    if program is None or not (directory / "main.cf").is_file():
        return None
    try:
        done = subprocess.run(  # noqa: S603 - postconf found in PATH or sbin, fixed options
            [program, *arguments], capture_output=True, text=True,
            timeout=POSTCONF_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
