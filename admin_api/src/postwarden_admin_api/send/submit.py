"""One SMTP transaction with the Postfix submission listener (blocking; run in a thread).

A :class:`SmtpSession` keeps its connection between messages (``RSET``
after a refused transaction) and checks an idle one with ``NOOP`` before
reusing it. Every outcome is a value: ``QUEUED`` with Postfix's queue id,
``RETRY`` for 4xx replies and connection failures, ``FAILED`` for 5xx
replies; recipients refused one by one with 5xx are listed apart.
"""

from __future__ import annotations

import enum
import re
import smtplib
import time
from dataclasses import dataclass, field

_QUEUE_ID = re.compile(r"queued as ([0-9A-Za-z]+)")
IDLE_CHECK_SECONDS = 2.0


class Outcome(enum.Enum):
    QUEUED = "queued"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SubmitResult:
    outcome: Outcome
    reply: str  # the deciding reply ("250 2.0.0 Ok: queued as X") or what failed
    queue_id: str | None = None
    refused: dict[str, str] = field(default_factory=dict)  # recipient -> 5xx reply


def _reply(code: int, text: bytes | str) -> str:
    decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(decoded.split())}"


def _by_code(code: int, text: bytes | str) -> SubmitResult:
    outcome = Outcome.FAILED if 500 <= code < 600 else Outcome.RETRY
    return SubmitResult(outcome, _reply(code, text))


class SmtpSession:
    def __init__(self, host: str, port: int, timeout: float, helo: str) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout
        self._helo = helo
        self._smtp: smtplib.SMTP | None = None
        self._last_used = 0.0

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None and time.monotonic() - self._last_used > IDLE_CHECK_SECONDS:
            try:
                alive = self._smtp.noop()[0] == 250
            except (smtplib.SMTPException, OSError):
                alive = False
            if not alive:
                self._smtp.close()
                self._smtp = None
        if self._smtp is None:
            smtp = smtplib.SMTP(self._host, self._port, self._helo, self._timeout)
            code, text = smtp.ehlo()
            if code != 250:
                smtp.close()
                raise smtplib.SMTPHeloError(code, text)
            self._smtp = smtp
        self._last_used = time.monotonic()
        return self._smtp

    def submit(self, sender: str, recipients: list[str], content: bytes) -> SubmitResult:
        try:
            smtp = self._connection()
            result = self._transaction(smtp, sender, recipients, content)
        except smtplib.SMTPResponseException as exc:
            self.close()
            return SubmitResult(Outcome.RETRY, _reply(exc.smtp_code, exc.smtp_error))
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            return SubmitResult(Outcome.RETRY, f"connection failed: {type(exc).__name__}")
        if result.outcome is not Outcome.QUEUED:
            self._reset(smtp)
        return result

    def _reset(self, smtp: smtplib.SMTP) -> None:
        try:
            if smtp.rset()[0] == 250:
                return
        except (smtplib.SMTPException, OSError):
            pass
        self.close()

    @staticmethod
    def _transaction(
        smtp: smtplib.SMTP, sender: str, recipients: list[str], content: bytes
    ) -> SubmitResult:
        code, text = smtp.mail(sender)
        if code != 250:
            return _by_code(code, text)
        accepted: list[str] = []
        refused: dict[str, str] = {}
        for recipient in recipients:
            code, text = smtp.rcpt(recipient)
            if code in (250, 251):
                accepted.append(recipient)
            elif 500 <= code < 600:
                refused[recipient] = _reply(code, text)
            else:  # one deferred recipient: try the whole message again later
                return _by_code(code, text)
        if not accepted:
            return SubmitResult(Outcome.FAILED, next(iter(refused.values())), refused=refused)
        try:
            code, text = smtp.data(content)
        except smtplib.SMTPDataError as exc:  # DATA itself refused
            return _by_code(exc.smtp_code, exc.smtp_error)
        if code != 250:
            return _by_code(code, text)
        reply = _reply(code, text)
        match = _QUEUE_ID.search(reply)
        return SubmitResult(
            Outcome.QUEUED, reply, match.group(1) if match else None, refused
        )
