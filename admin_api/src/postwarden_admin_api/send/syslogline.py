"""Where a line of Postfix's log says who wrote it.

A line's prefix ends at its first ``": "``, which must follow the program's
pid (``postfix/cleanup[77]: ``); the rest is the message, where other mail's
senders, Message-IDs and remote replies appear. Lines are only ever read
from the start of their message, and a line whose prefix ends otherwise
(``dovecot: ...``, a program logging without a pid) is no Postfix line:
text an outsider put in a log line must not read as one of Postfix's. A line
in RFC 5424's form (rsyslog's ``RSYSLOG_SyslogProtocol23Format``, syslog-ng's
``syslog-protocol``) names its program and pid in fields of their own:
``<22>1 2026-12-06T10:44:12.123456+00:00 mx postfix/smtp 77 - - QID: ...``,
``<PRI>`` and the version perhaps left out, the structured data ``[...]`` in
place of ``-``; its message starts after the structured data. (rsyslog names
the program ``postfix``, which says no daemon, unless
``parser.permitSlashInProgramName`` is on.)

A line starts with when it was logged (:func:`logged_at`): Postfix's own
``maillog_file`` and a traditional syslog file write ``Dec  6 10:44:12`` (local
time, no year; ``.123456`` added by some), rsyslog's high-precision format RFC
3339 (``2026-12-06T10:44:12.123456+00:00``); ``journalctl -o short-iso`` too, its
offset without the colon before systemd 255 (``+0000``); RFC 5424 too, after its
``<PRI>`` and version.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass

_PROGRAM = re.compile(r"\S+\[\d+")
# <PRI>VERSION, either left out by some templates: what an RFC 5424 stamp follows.
_RFC5424_HEAD = re.compile(r"(?:<\d{1,3}>)?(?:\d{1,2} )?")
# The rest of RFC 5424's header: stamp (or "-"), host, program (no "[": a traditional
# line's "postfix/smtp[77]:" is none), pid, MSGID, and the structured data, whose quoted
# values may hold "]" or ": ". rsyslog keeps the space a message logged through syslog(3)
# starts with (two spaces before it); a message may start with a byte order mark. Each
# field is taken whole (possessive): a line in another form fails at once.
_RFC5424 = re.compile(
    r"(?:-|\d{4}-\d\d-\d\dT\S++) \S++ (?P<program>[^\s\[:]++) (?P<pid>\d++) \S++ "
    r'(?:-|(?:\[(?:[^"\]]|"(?:[^"\\]|\\.)*+")*+\])++)(?: \ufeff? ?)?'
)
_TRADITIONAL = re.compile(r"([A-Z][a-z]{2}) ( \d|\d\d) (\d\d):(\d\d):(\d\d)(\.\d{1,6})? ")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:?\d\d) ")
_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
# A stamp without a year is taken in the year that puts it at most this far past the
# reading (clocks a little apart): a line from December read in January is last year's.
_AHEAD_SECONDS = 86400.0


@dataclass(frozen=True, slots=True)
class LogLine:
    text: str
    program: str  # postfix/cleanup, postfix-x/smtp, ...
    start: int  # where the message begins in ``text``
    pid: str  # of the process that wrote it

    @property
    def process(self) -> str:
        """The program and its pid: the process that wrote the line, while it lives."""
        return f"{self.program}[{self.pid}]"

    @property
    def daemon(self) -> str:
        """The Postfix daemon, without its instance (cleanup, smtp, ...); "" for a
        program not named as Postfix's are."""
        _, slash, name = self.program.rpartition("/")
        return name if slash else ""

    def written_by(self, syslog_name: str | None) -> bool:
        """Whether the program is a daemon of the Postfix instance whose ``syslog_name``
        is given (a service's ``-o syslog_name=postfix/send`` is under ``postfix``); any
        Postfix's for None. The name is what the writer says it is: this tells one
        instance's lines from another's in a shared log, never Postfix from a forger."""
        return syslog_name is None or self.program.startswith(f"{syslog_name}/")


def split_line(line: str) -> LogLine | None:
    """Who wrote ``line`` and where its message starts; None for a line not shaped
    like a Postfix daemon's."""
    if header := _RFC5424.match(line, _past_head(line)):
        return LogLine(line, header["program"], header.end(), header["pid"])
    end = line.find(": ") - 1
    if end < 0 or line[end] != "]":
        return None
    start = line.rfind(" ", 0, end) + 1
    if not _PROGRAM.fullmatch(line, start, end):
        return None
    bracket = line.index("[", start)
    return LogLine(line, line[start:bracket], end + 3, line[bracket + 1 : end])


def _past_head(text: str) -> int:
    """Where ``text``'s stamp starts: past RFC 5424's ``<PRI>`` and version, if any."""
    head = _RFC5424_HEAD.match(text)
    return head.end() if head else 0


def logged_at(text: str, now: float) -> float | None:
    """When the line ``text`` says it was logged (seconds since the epoch), read at
    ``now``; None for a stamp in neither form, naming no real date, or one later than
    ``_AHEAD_SECONDS`` past ``now`` or before 1970 (the database and the webhooks take
    any other). A stamp without a zone is in this host's local time, as the writer's
    is; in the hour repeated when daylight saving time ends, the later reading that
    is not past ``now``."""
    if stamp := _RFC3339.match(text, _past_head(text)):
        try:
            logged = dt.datetime.fromisoformat(stamp.group().rstrip()).timestamp()
        except ValueError:  # shaped like one, naming no real moment (month 13)
            return None
        return logged if 0 <= logged <= now + _AHEAD_SECONDS else None
    if (stamp := _TRADITIONAL.match(text)) is None or stamp[1] not in _MONTHS:
        return None
    month, day, hour, minute, second = _MONTHS[stamp[1]], *map(int, stamp.groups()[1:5])
    year = time.localtime(now).tm_year
    # From next year's (a stamp just past New Year read just before it) back to the
    # last leap year's (February 29th).
    for candidate in range(year + 1, year - 5, -1):
        try:
            local = dt.datetime(candidate, month, day, hour, minute, second)
        except ValueError:
            continue
        earlier, later = local.timestamp(), local.replace(fold=1).timestamp()
        logged = later if earlier < later <= now else earlier
        if logged <= now + _AHEAD_SECONDS:
            return logged + float(stamp[6] or 0)
    return None
