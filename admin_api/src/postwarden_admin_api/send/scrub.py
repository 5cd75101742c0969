"""What the send API may store or log of texts it did not write (SMTP replies, raw fields)."""

from __future__ import annotations

import re

from postwarden_admin_api.addresses import mask
from postwarden_policies.redact import redact

MAX_REPLY = 500
# The domain as freely as the local part: an IDN one (SMTPUTF8, ``a@ñandu.es``) may
# start with a letter outside ASCII, where an ASCII-only class missed the whole address.
_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:@]+")
# C0, DEL, C1 and Unicode's line and paragraph separators: NEL (\x85), LS and PS end a
# line for str.splitlines() and for readers of the stored reply as much as LF does.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def scrub_reply(text: str) -> str:
    """A remote reply fit to store: secrets redacted, one line, bounded length."""
    return redact(_CONTROL.sub(" ", text)).strip()[:MAX_REPLY]


def for_log(text: str) -> str:
    """A stored reply fit for a log line: addresses masked too."""
    return _ADDRESS.sub(lambda m: mask(m.group(0)), scrub_reply(text))
