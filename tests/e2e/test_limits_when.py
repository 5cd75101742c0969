"""`limits: when:` through the real Postfix and the real milter: a limit for
authenticated mail caps it at RCPT time and leaves unauthenticated mail alone.

Postfix authenticates SMTP clients through a stand-in for Dovecot's auth service (its
protocol, version 1.2: enough of it for PLAIN), so that ``{auth_authen}`` reaches the
milter at MAIL FROM as it does in production.
"""

from __future__ import annotations

import base64
import smtplib
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.postfix import has_header

from . import messages
from .conftest import MailSystem, mail_system_for
from .messages import SENDER

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

USER, PASSWORD = "alice", "secret"
RECIPIENTS = ["a@example.net", "b@example.net", "c@example.net"]


class _DovecotAuth(socketserver.StreamRequestHandler):
    """One connection of Postfix's xsasl_dovecot client: the handshake, then AUTH
    requests, answered OK for USER's PLAIN credentials, FAIL for any other."""

    def handle(self) -> None:
        self.wfile.write(b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\n"
                         b"COOKIE\t" + b"0" * 32 + b"\nDONE\n")
        for line in self.rfile:
            fields = line.rstrip(b"\n").split(b"\t")
            if fields[0] != b"AUTH":
                continue
            request = fields[1]
            resp = [f[5:] for f in fields if f.startswith(b"resp=")]
            if not resp:  # no initial response: ask for it
                self.wfile.write(b"CONT\t" + request + b"\t\n")
                resp = [self.rfile.readline().rstrip(b"\n").split(b"\t")[2]]
            _, user, password = base64.b64decode(resp[0]).split(b"\0")
            ok = (user, password) == (USER.encode(), PASSWORD.encode())
            self.wfile.write((b"OK\t%s\tuser=%s\n" if ok else b"FAIL\t%s\tuser=%s\n")
                             % (request, user))


@pytest.fixture(scope="module")
def auth_port() -> Iterator[int]:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _DovecotAuth) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.server_address[1]
        server.shutdown()


@pytest.fixture(scope="module")
def system(database_url: str, auth_port: int,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSystem]:
    policies: Path = tmp_path_factory.mktemp("policies")
    (policies / "inbound.yaml").write_text(
        "version: 1\nname: inbound\nlimits: {max_recipients: 5}\n")
    (policies / "submission.yaml").write_text(
        "version: 1\nname: submission\nlimits:\n  when: {authenticated: true}\n"
        "  max_recipients: 2\n")
    sasl = {"smtpd_sasl_auth_enable": "yes", "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": f"inet:127.0.0.1:{auth_port}"}
    with mail_system_for(database_url, policy_dir=policies, main=sasl) as mail_system:
        yield mail_system


def _send(system: MailSystem, data: bytes, *, login: bool) -> list[tuple[int, bytes]]:
    """The replies to each RCPT TO, the message sent to those accepted."""
    with smtplib.SMTP("127.0.0.1", system.postfix.port, local_hostname="client.postwarden.test",
                      timeout=60) as smtp:
        smtp.ehlo()
        if login:
            smtp.login(USER, PASSWORD)
        assert smtp.mail(SENDER)[0] == 250
        replies = [smtp.rcpt(rcpt) for rcpt in RECIPIENTS]
        assert smtp.data(data)[0] == 250
    return replies


def test_an_authenticated_only_limit_caps_authenticated_mail_alone(system: MailSystem) -> None:
    anonymous = messages.clean(subject="anonymous")
    assert [code for code, _ in _send(system, anonymous.data, login=False)] == [250, 250, 250]
    delivered = system.capture.wait_for_message(has_header("Message-ID", anonymous.message_id))
    assert delivered.rcpt_tos == tuple(RECIPIENTS)
    row = system.audit_row(anonymous.message_id)
    assert (row["auth_user"], list(row["recipients"])) == (None, RECIPIENTS)

    signed_in = messages.clean(subject="signed in")
    replies = _send(system, signed_in.data, login=True)
    assert [code for code, _ in replies] == [250, 250, 452]
    assert replies[2][1].startswith(b"4.5.3 ")
    delivered = system.capture.wait_for_message(has_header("Message-ID", signed_in.message_id))
    assert delivered.rcpt_tos == tuple(RECIPIENTS[:2])
    row = system.audit_row(signed_in.message_id)
    assert (row["auth_user"], list(row["recipients"])) == (USER, RECIPIENTS[:2])
