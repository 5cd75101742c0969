"""What ``postwarden-milter check`` compares with the Postfix on this host, through
postconf(1), when there is one (``MAIL_CONFIG`` names another instance's directory, as
for Postfix's own commands): main.cf's settings (not master.cf's ``-o`` overrides), a
warning each, never a refusal (the milter may serve a Postfix elsewhere, on TCP).

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
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from postwarden_policies import PolicySet

from .handler import SMTPUTF8_ENABLE

POSTCONF_TIMEOUT = 10.0
# postconf lives in sbin, which the milter user's PATH may lack.
SBIN = os.pathsep.join(("/usr/sbin", "/usr/local/sbin"))
CONFIG_DIRECTORY = "/etc/postfix"  # Postfix's default, without MAIL_CONFIG
ASKED = ("duplicate_filter_limit", "smtpd_authorized_xclient_hosts", "milter_connect_macros",
         "smtputf8_enable", "milter_mail_macros", "milter_macro_defaults")
# A milter_macro_defaults entry for it: name=value or {name=value}, the name with or
# without braces.
_SMTPUTF8_DEFAULT = re.compile(r"(?:^|[\s,{])\{?smtputf8_enable\}?\s*=")


def postfix_warnings(policy_set: PolicySet | None) -> list[str]:
    """What this host's Postfix is set up to get wrong with the milter (``policy_set``:
    the set a start would run, None where that is not known); none when postconf cannot
    say."""
    values = postconf(*ASKED)
    if values is None:
        return []
    duplicate_limit, xclient_hosts, connect_macros, smtputf8, mail_macros, defaults = values
    warnings = []
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
    if policy_set is not None and duplicate_limit.isdigit():
        warnings += _duplicate_filter_warnings(policy_set, int(duplicate_limit))
    return warnings


def _sends_smtputf8_macro(mail_macros: str, defaults: str) -> bool:
    """Whether Postfix sends the milter {smtputf8_enable} at MAIL FROM: listed in
    milter_mail_macros, and given a value by milter_macro_defaults."""
    return SMTPUTF8_ENABLE in mail_macros.split() and bool(_SMTPUTF8_DEFAULT.search(defaults))


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
    postconf or a main.cf for it (postconf would sleep a second on its fatal error), or
    when it fails."""
    directory = Path(os.environ.get("MAIL_CONFIG") or CONFIG_DIRECTORY)
    path = os.pathsep.join((os.environ.get("PATH", ""), SBIN))
    program = shutil.which("postconf", path=path)
    if program is None or not (directory / "main.cf").is_file():
        return None
    try:
        done = subprocess.run(  # noqa: S603 - postconf found in PATH or sbin, fixed options
            [program, "-xh", *names], capture_output=True, text=True,
            timeout=POSTCONF_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    values = done.stdout.split("\n")[: len(names)]
    return values if done.returncode == 0 and len(values) == len(names) else None
