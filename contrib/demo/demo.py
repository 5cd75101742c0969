"""`make demo`: watch postwarden check, clean and log mail in a private Postfix.

Starts, all on loopback and under temporary directories: a throwaway
PostgreSQL cluster (migrated), a capture SMTP server standing in for the next
hop, the milter with policies/examples, and a private Postfix instance that
passes every message through the milter and relays it to the capture server.
It sends the sample messages in contrib/demo/messages (plus one generated
message with an oversized attachment), shows what each SMTP client heard and
where each message went (with the headers and body as delivered, compared
with what was sent), prints the audit log, and stops everything it started,
even when interrupted.

The servers come from the test fixtures (tests/fixtures), so the demo runs
exactly what the end-to-end tests run. Run as root (Postfix and the
throwaway cluster need it): `make demo`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
from tests.fixtures.milterproc import running_milter  # noqa: E402
from tests.fixtures.postfix import (  # noqa: E402
    CapturedMessage,
    PostfixInstance,
    SmtpResult,
    has_header,
    require_root,
    running_postfix,
    send_message,
    wait_for,
)
from tests.fixtures.postgres import running_cluster  # noqa: E402
from tests.fixtures.signals import interrupt_on_termination  # noqa: E402

from postwarden_store import migrate_database  # noqa: E402

MESSAGES = Path(__file__).parent / "messages"
POLICIES = REPO / "policies" / "examples"
RECIPIENT = "bob@example.net"
# policies/examples replaces attachments over 10 MB (max_attachment_bytes) by a
# notice and refuses messages over 25 MB; Postfix's own limit must let them in.
OVERSIZED_ATTACHMENT_BYTES = 11 * 1024 * 1024
POSTFIX_MAIN = {"message_size_limit": str(40 * 1024 * 1024)}
# Added to every delivered message: Postfix's trace header, and the milter's
# id_header that ties the message to its audit row.
TRANSPORT_HEADERS = {"received", "x-postwarden-id"}


@dataclass(frozen=True)
class Sample:
    label: str
    sender: str
    data: bytes  # CRLF line ends

    @property
    def message_id(self) -> str:
        for line in self.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"message-id":
                return value.decode().strip()
        raise ValueError(f"{self.label}: no Message-ID")


def _from_file(label: str, sender: str, name: str) -> Sample:
    text = (MESSAGES / name).read_bytes().replace(b"\r\n", b"\n")
    return Sample(label, sender, text.replace(b"\n", b"\r\n"))


def _oversized() -> Sample:
    # Generated rather than stored: a multi-megabyte file has no place in git.
    message = EmailMessage()
    message["From"] = "Carol Example <carol@example.org>"
    message["To"] = f"Bob Example <{RECIPIENT}>"
    message["Subject"] = "Scans from the copier"
    message["Date"] = "Mon, 23 Nov 2026 09:03:00 +0000"
    message["Message-ID"] = "<demo-oversized@example.org>"
    message.set_content("The scans are attached (all of them, in one file).\n")
    message.add_attachment(
        b"%PDF-1.7\n" + os.urandom(OVERSIZED_ATTACHMENT_BYTES),
        maintype="application", subtype="pdf", filename="scans.pdf",
    )
    return Sample("oversized attachment", "carol@example.org",
                  message.as_bytes(policy=message.policy.clone(linesep="\r\n")))


def samples() -> list[Sample]:
    return [
        _from_file("clean", "alice@example.org", "clean.eml"),
        _from_file("hostile HTML", "news@shop.example", "hostile-html.eml"),
        _from_file("executable", "billing@invoices.example", "executable.eml"),
        _oversized(),
        _from_file("broken MIME (held)", "payroll@examp1e.org", "quarantine.eml"),
    ]


def _fate(result: SmtpResult, queue_id: str | None, postfix: PostfixInstance,
          delivered: CapturedMessage | None) -> str:
    if not result.accepted:
        return "refused"
    if queue_id and queue_id in postfix.held_queue_ids():
        return "held (hold queue)"
    return "delivered" if delivered is not None else "queued"


def _split(data: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """The header fields (name, unfolded value) and the body of a CRLF message."""
    head, _, body = data.partition(b"\r\n\r\n")
    fields: list[tuple[str, str]] = []
    for line in head.decode("utf-8", "replace").split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1] = (fields[-1][0], f"{fields[-1][1]} {line.strip()}")
        elif line:
            name, _, value = line.partition(":")
            fields.append((name, value.strip()))
    return fields, body


def _short(text: str, width: int = 32) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _header_edits(sent: bytes, delivered: bytes) -> str:
    """What the delivered copy's header block has that the sent one had not, and the
    other way round (Received and X-Postwarden-Id, added to every message, left out)."""
    before, _ = _split(sent)
    after, _ = _split(delivered)
    edits = []
    for name, value in after:
        if name.lower() in TRANSPORT_HEADERS:
            continue
        if (name, value) in before:
            before.remove((name, value))
        elif any(n.lower() == name.lower() for n, _ in before):
            edits.append(f"{name}: {_short(value)}")
        else:
            edits.append(f"+{name}: {_short(value)}")
    after_names = {name.lower() for name, _ in after}
    edits += [f"-{name}" for name, _ in before if name.lower() not in after_names]
    return "; ".join(edits) or "none"


def _body(sent: bytes, delivered: bytes) -> str:
    return "as sent" if _split(sent)[1] == _split(delivered)[1] else "rewritten"


def _bare(message_id: str | None) -> str | None:
    return message_id.strip().strip("<>") if message_id else None


async def _audit(dsn: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT queue_id, message_id, sender, action, smtp_reply, rules, changes, "
            "duration_ms FROM audit_events ORDER BY time"
        )
        return [dict(row) for row in rows]
    finally:
        await conn.close()


def _edits(changes: Any) -> str:
    parts = []
    for change in json.loads(changes) if isinstance(changes, str) else changes:
        if change.get("kind") == "attachment_stripped":
            parts.append(f"stripped {change['filename']} ({change['size'] // 1024} KiB)")
        elif change.get("kind") == "html_sanitized":
            removed = ", ".join(f"{what} x{count}" for what, count in change["removed"])
            parts.append(f"sanitized HTML ({removed})")
        elif change.get("kind") == "signed_html_kept":
            parts.append("signed HTML left as it came (only harmless markup to clean)")
    return "; ".join(parts) or "-"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)


def _step(text: str, started: float) -> None:
    print(f"[{time.monotonic() - started:5.1f}s] {text}", flush=True)


def main() -> int:
    try:
        require_root()  # before anything starts
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    started = time.monotonic()
    _step("starting a throwaway PostgreSQL cluster", started)
    with running_cluster() as cluster:
        dsn = cluster.admin_dsn
        asyncio.run(migrate_database(dsn))
        _step(f"migrated; starting the milter with {POLICIES.relative_to(REPO)}", started)
        with running_milter(POLICIES, dsn, env={"POSTWARDEN_INSTANCE_NAME": "demo"}) as milter:
            _step("starting a private Postfix (loopback) relaying to a capture server",
                  started)
            with running_postfix(milter=milter.postfix_spec, main=POSTFIX_MAIN) as (
                postfix, capture
            ):
                _step(f"Postfix listens on 127.0.0.1:{postfix.port}; sending samples",
                      started)
                results = []
                for sample in samples():
                    result = send_message(postfix.port, sample.data, sample.sender, [RECIPIENT])
                    results.append((sample, result))
                    print(f"    {sample.label:22} {sample.sender:26} -> {result.code} "
                          f"{result.text[:70]}", flush=True)
                for sample, result in results:
                    if result.accepted and "held" not in sample.label:
                        capture.wait_for_message(has_header("Message-ID", sample.message_id))
                delivered = {
                    sample.message_id: next((
                        m for m in capture.messages
                        if has_header("Message-ID", sample.message_id)(m)), None)
                    for sample, _ in results
                }
                wait_for(lambda: len(asyncio.run(_audit(dsn))) >= len(results), timeout=30)
                rows = asyncio.run(_audit(dsn))
                # The queue id from the audit row: Postfix assigns one before the
                # milter's verdict, so a refused message has one too (its reply does
                # not say it).
                audited = {_bare(row["message_id"]): row["queue_id"] for row in rows}
                table = []
                for s, r in results:
                    queue_id = audited.get(_bare(s.message_id)) or r.queue_id
                    copy = delivered[s.message_id]
                    table.append([
                        s.label, queue_id or "-", f"{r.code}",
                        _fate(r, queue_id, postfix, copy),
                        _header_edits(s.data, copy.data) if copy else "-",
                        _body(s.data, copy.data) if copy else "-",
                    ])
                print("\nWhere each message went (headers and body as delivered):")
                print(_table(table, ["message", "queue id", "reply", "fate",
                                     "header edits", "body"]))
                print("(every delivered copy also gets Postfix's Received header and "
                      "X-Postwarden-Id, left out above)")
        print("\nThe audit log (table audit_events; header edits are not recorded there,"
              " the rules that made them are):")
        print(_table(
            [[row["queue_id"] or "-", row["sender"], row["action"],
              ", ".join(row["rules"]) or "-", _edits(row["changes"])] for row in rows],
            ["queue id", "sender", "verdict", "rules", "content edits"]))
    _step("stopped everything; done", started)
    return 0


if __name__ == "__main__":
    interrupt_on_termination()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: stopped everything the demo had started", file=sys.stderr)
        sys.exit(130)
