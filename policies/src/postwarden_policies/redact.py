"""Secret redaction for every log line and audit value.

``redact(text)`` replaces the secret part of credentials it recognizes with
``[REDACTED]`` and keeps the non-secret context that helps a reader: the
token kind, our API key's id, the user name in a URL, the key in a
``password=`` pair. Recognized: bearer/basic authorization values, our API
keys (``pw_<keyid>_<secret>``), ``sk-`` keys, Slack ``xox?-`` tokens, AWS
access key ids, GitHub tokens, JWTs, passwords in URLs and
``password=``/``passwd:``/``secret=``/``token=`` style pairs, under longer
names too (``sslpassword=``, ``PGPASSWORD=``, ``secret_key:``).

The patterns are RE2's, which match in linear time: the text is often the
sender's (a Subject, a Message-ID in a log line), and Python's engine took
seconds on a 100 KB Subject of ``a-a-a-...`` (the URL rule retried from
every word start).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

import re2

MASK = "[REDACTED]"
# The name of a secret (password, sslpassword, PGPASSWORD, db_password, secret_key,
# api-key, recipient_hash_key, ...): the start is bounded, as a match is copied.
_CREDENTIAL_NAME = (r"\w{0,64}?(?:password|passwd|pwd|secret|token|api[_-]?key|hash_key)"
                r"(?:_?key)?")

# (pattern, replacement); groups named "keep" survive, the rest is masked.
_RULES: tuple[tuple[Any, str], ...] = (
    # JWT first: its dots would otherwise be split by the generic rules below.
    (re2.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MASK),
    (re2.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1\2{MASK}"),
    (re2.compile(r"\b(pw_[A-Za-z0-9]{2,32}_)[A-Za-z0-9_-]{8,}"), rf"\1{MASK}"),
    (re2.compile(r"\b(sk-(?:proj-|live_|test_)?)[A-Za-z0-9_-]{16,}"), rf"\1{MASK}"),
    (re2.compile(r"\b(xox[abprs]-)[A-Za-z0-9-]{8,}"), rf"\1{MASK}"),
    (re2.compile(r"\b((?:AKIA|ASIA)[A-Z0-9]{4})[A-Z0-9]{12}\b"), rf"\1{MASK}"),
    (re2.compile(r"\b(gh[pousr]_)[A-Za-z0-9]{20,}"), rf"\1{MASK}"),
    (re2.compile(r"\b(github_pat_)[A-Za-z0-9_]{20,}"), rf"\1{MASK}"),
    # scheme://user:password@host keeps the user name. The password runs to the last @
    # of the authority: one written with an @ unencoded (asyncpg's split) lost only its
    # head. Bounded, as the name's start below: a match is copied for its groups.
    (re2.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/]*:)[^\s/?#]{1,256}@"), rf"\1{MASK}@"),
    # key=value / key: value pairs, also inside a longer name (sslpassword, PGPASSWORD,
    # db_password, secret_key, recipient_hash_key); quoted values lose their content only.
    (
        re2.compile(
            rf"(?i)\b({_CREDENTIAL_NAME}[\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&;,]+)"
        ),
        rf"\1{MASK}",
    ),
)


# All the rules in one pass: most texts hold no secret, and one search costs
# what one substitution does (a tenth of running them all).
_ANY_RULE = re2.compile("|".join(f"(?:{pattern.pattern})" for pattern, _ in _RULES))
# Every rule's match holds one of these, in lower case once the long s, U+017F
# (which RE2's case-insensitive rules take for "s", and lower() keeps), is an "s"; the
# Kelvin sign lowers to "k". A text without any (most text) is returned without
# calling RE2: RE2 lets go of the GIL for each match, and a thread that lets go
# and takes it back thousands of times a second starves the others, since
# CPython's waiting thread asks for the GIL only after a whole switch interval
# without a switch (the admin service's event loop waited up to 300 ms while the
# maillog reader scrubbed replies). No repetition in the pattern: linear in
# Python's engine too.
_KEYWORDS = re.compile(
    "eyj|bearer|basic|token|pw_|sk-|xox|akia|asia|gh[pousr]_|github_pat_|://|passw|pwd|"
    "secret|api[_-]?key|hash_key"
)


_NAMES_A_SECRET = re2.compile(rf"(?i)\b{_CREDENTIAL_NAME}$")


def names_a_secret(name: str) -> bool:
    """Whether ``name`` (a JSON key: ``api_token``, ``X-Api-Key``) names a secret, whose
    value alone :func:`redact` cannot tell from any other text."""
    return _NAMES_A_SECRET.search(name) is not None


def redact(text: str) -> str:
    """``text`` with every recognized secret replaced by ``[REDACTED]``."""
    if not _KEYWORDS.search(text.lower().replace("\u017f", "s")) or not _ANY_RULE.search(text):
        return text
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


# C0 and C1 controls, DEL and Unicode's line and paragraph separators: a sender's
# (a Message-ID, a header name) in a log line could forge a line, move a terminal's
# cursor or make journald store the line as a blob that grep and journalctl skip.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_matches(pattern: re.Pattern[str], text: str) -> str:
    """``text`` with each character ``pattern`` matches written as a Python escape
    (``\\x1b``, ``\\u2028``)."""
    return pattern.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100
                       else f"\\u{ord(m[0]):04x}", text)


def escape_controls(text: str) -> str:
    """``text`` with each control character written as an escape: one line, inert."""
    return escape_matches(_CONTROL, text)


class RedactingFormatter(logging.Formatter):
    """The one place that scrubs everything a process logs, its libraries' records
    too (aiohttp logs a malformed request's headers): the message is redacted
    (then cut to ``max_message`` characters, then its control characters escaped:
    one line each), and so are tracebacks and stacks."""

    def __init__(self, fmt: str, max_message: int | None = None) -> None:
        super().__init__(fmt)
        self.max_message = max_message

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = redact(record.message)  # before cutting: a cut secret may not match
        if self.max_message is not None and len(message) > self.max_message:
            message = message[: self.max_message] + "...[truncated]"
        record.message = escape_controls(message)  # format() renders it afresh for every handler
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))


def log_to_stderr(fmt: str, level: str, max_message: int | None = None,
                  filters: Iterable[logging.Filter] = ()) -> None:
    """Send every record of the process to stderr (systemd's journal, a test's pipe)
    through a :class:`RedactingFormatter`; the only handler."""
    handler = logging.StreamHandler(sys.stderr)
    for record_filter in filters:
        handler.addFilter(record_filter)
    handler.setFormatter(RedactingFormatter(fmt, max_message))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
