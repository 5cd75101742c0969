"""Where a line of Postfix's log says who wrote it.

A line's prefix ends at its first ``": "``, which must follow the program's
pid (``postfix/cleanup[77]: ``); the rest is the message, where other mail's
senders, Message-IDs and remote replies appear. Lines are only ever read
from the start of their message, and a line whose prefix ends otherwise
(``dovecot: ...``, a program logging without a pid) is no Postfix line:
text an outsider put in a log line must not read as one of Postfix's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PROGRAM = re.compile(r"\S+\[\d+")


@dataclass(frozen=True, slots=True)
class LogLine:
    text: str
    program: str  # postfix/cleanup, postfix-x/smtp, ...
    start: int  # where the message begins in ``text``

    @property
    def daemon(self) -> str:
        """The Postfix daemon, without its instance (cleanup, smtp, ...); "" for a
        program not named as Postfix's are."""
        _, slash, name = self.program.rpartition("/")
        return name if slash else ""


def split_line(line: str) -> LogLine | None:
    """Who wrote ``line`` and where its message starts; None for a line not shaped
    like a Postfix daemon's."""
    end = line.find(": ") - 1
    if end < 0 or line[end] != "]":
        return None
    start = line.rfind(" ", 0, end) + 1
    if not _PROGRAM.fullmatch(line, start, end):
        return None
    return LogLine(line, line[start : line.index("[", start)], end + 3)
