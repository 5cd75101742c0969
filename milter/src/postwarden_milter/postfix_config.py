"""What ``postwarden-milter check`` compares with the Postfix on this host, through
postconf(1), when there is one (``MAIL_CONFIG`` names another instance's directory, as
for Postfix's own commands): a warning each, never a refusal (the milter may serve a
Postfix elsewhere, on a TCP socket).

Postfix's cleanup drops a recipient repeated in one message only among the first
``duplicate_filter_limit`` it remembers (1000 by default; 0: all). The milter counts a
repeated recipient once wherever it comes (session.recipient_key), so a policy allowing
more recipients than that lets a client list one mailbox again past them: the milter
counts it once, Postfix delivers it a copy per repeat.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from postwarden_policies import PolicySet

POSTCONF_TIMEOUT = 10.0
# postconf lives in sbin, which the milter user's PATH may lack.
SBIN = os.pathsep.join(("/usr/sbin", "/usr/local/sbin"))
CONFIG_DIRECTORY = "/etc/postfix"  # Postfix's default, without MAIL_CONFIG


def duplicate_filter_warnings(policy_set: PolicySet) -> list[str]:
    """One line per enforce-mode policy whose max_recipients is above this host's
    duplicate_filter_limit; none when postconf cannot say."""
    capped = [(policy.name, policy.limits.max_recipients) for policy in policy_set.policies
              if not policy.report_only and policy.limits.max_recipients]
    if not capped:
        return []  # postconf not even run
    limit = postconf_number("duplicate_filter_limit")
    if not limit:  # unknown, or 0: every recipient remembered
        return []
    return [f"policy {name}: max_recipients {most} is above Postfix's duplicate_filter_limit "
            f"({limit}): past {limit} recipients Postfix delivers a repeated one again, which "
            f"the milter counts once; set duplicate_filter_limit to {most} or more (or 0)"
            for name, most in capped if most > limit]


def postconf_number(name: str) -> int | None:
    """The value of main.cf's ``name`` as this host's postconf gives it; None without
    postconf or a main.cf for it (postconf would sleep a second on its fatal error), or
    when it fails or gives no number."""
    directory = Path(os.environ.get("MAIL_CONFIG") or CONFIG_DIRECTORY)
    postconf = shutil.which("postconf", path=os.pathsep.join((os.environ.get("PATH", ""), SBIN)))
    if postconf is None or not (directory / "main.cf").is_file():
        return None
    try:
        done = subprocess.run(  # noqa: S603 - postconf found in PATH or sbin, fixed options
            [postconf, "-xh", name], capture_output=True, text=True,
            timeout=POSTCONF_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = done.stdout.strip()
    return int(value) if done.returncode == 0 and value.isdigit() else None
