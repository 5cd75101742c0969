"""Policy revisions: upload (errors with line/column), list, fetch, diff, activate, rollback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_store import connect
from postwarden_store.policies import POLICY_CHANNEL, fetch_active_sources
from tests.fixtures.adminapp import bearer
from tests.webhooks.support import add_endpoint

EXAMPLES = Path(__file__).parents[2] / "policies" / "examples"
YAML = {"Content-Type": "application/yaml"}


def policy(name: str, sender: str = "bad@evil.test") -> str:
    return (f"version: 1\nname: {name}\npriority: 50\nrules:\n  - name: {name}-block\n"
            f"    when:\n      sender: [{sender}]\n    then: reject\n")


async def upload(client: TestClient[Any, Any], key: str, text: str, comment: str = "") -> Any:
    response = await client.post("/api/v1/policies", data=text.encode(),
                                 headers={**bearer(key), **YAML}, params={"comment": comment})
    return response.status, await response.json()


async def test_a_blank_comment_is_no_comment(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    """It was stored, and listed, as "" (or as blanks) beside the null of one left out."""
    for name, comment in (("uncommented", ""), ("blank-comment", "  ")):
        status, revision = await upload(admin_client, admin_key, policy(name), comment)
        assert (status, revision["comment"]) == (201, None)


async def test_malformed_yaml_is_answered_with_line_and_column(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    text = "version: 1\nname: broken\nrules:\n  - name: a\n    when: {sender: [x@y.z]\n"
    status, body = await upload(admin_client, admin_key, text)
    assert status == 422
    assert body["error"]["code"] == "validation_failed"
    detail = body["error"]["details"][0]
    assert (detail["line"], detail["column"]) == (5, 11)  # the { never closed
    assert "this { is not closed before the file ends" in detail["message"]


async def test_every_schema_problem_is_listed_with_its_position(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    text = ("version: 1\nname: bad\nbogus: 1\nrules:\n  - name: r\n    when:\n"
            "      client_ip: [not-a-cidr]\n    then: explode\n")
    status, body = await upload(admin_client, admin_key, text)
    assert status == 422
    positions = {(d["line"], d["column"]) for d in body["error"]["details"]}
    assert (3, 1) in positions
    assert len(body["error"]["details"]) >= 3


async def test_a_number_too_large_is_a_validation_error_not_a_500(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    text = 'version: 1\nname: huge\nlimits:\n  max_attachment_bytes: "' + "9" * 5000 + 'MB"\n'
    status, body = await upload(admin_client, admin_key, text)
    assert status == 422
    assert body["error"]["details"] == [{
        "file": "upload", "line": 4, "column": 25,
        "message": "limits.max_attachment_bytes: size too large: at most 9223372036854775807 "
                   "bytes, got the string "
                   f"'{'9' * 80}'... (5002 characters)",
    }]


async def test_an_upload_that_is_not_utf8_is_answered_with_line_and_column(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # A file kept in Latin-1: `check` names its line and column, and so does the upload
    # (policy push prints the detail as the file's place).
    latin = policy("latin", "m\u00fcller@evil.test").encode("latin-1")
    response = await admin_client.post("/api/v1/policies", data=latin,
                                       headers={**bearer(admin_key), **YAML})
    assert response.status == 422
    assert (await response.json())["error"]["details"] == [{
        "field": "body", "file": "upload", "line": 7, "column": 17,
        "message": "cannot read: byte 0xfc is not UTF-8 text",
    }]


async def test_the_stored_name_is_the_one_the_engine_compiled(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # YAML 1.1 (yaml.safe_load) reads 2024_01 as the number 202401; the loader reads text.
    status, body = await upload(admin_client, admin_key, "version: 1\nname: 2024_01\n")
    assert status == 201
    assert body["policy_name"] == "2024_01"
    listed = await (await admin_client.get("/api/v1/policies", headers=bearer(admin_key))).json()
    assert "2024_01" in {p["policy_name"] for p in listed["policies"]}


async def test_upload_list_fetch_diff(admin_client: TestClient[Any, Any], admin_key: str) -> None:
    first_text = policy("lifecycle")
    status, first = await upload(admin_client, admin_key, first_text, "first")
    assert status == 201
    assert first["policy_name"] == "lifecycle" and first["comment"] == "first"
    assert first["author_key_id"] == admin_key.split("_")[1]
    assert (await upload(admin_client, admin_key, first_text))[1]["id"] == first["id"]
    status, second = await upload(admin_client, admin_key, policy("lifecycle", "worse@evil.test"))
    assert status == 201 and second["content_hash"] != first["content_hash"]

    headers = bearer(admin_key)
    listed = await (await admin_client.get("/api/v1/policies", headers=headers)).json()
    entry = next(p for p in listed["policies"] if p["policy_name"] == "lifecycle")
    assert entry["latest_revision"] == second["id"] and entry["revisions"] == 2
    revisions = await (await admin_client.get(
        "/api/v1/policies/lifecycle/revisions", headers=headers)).json()
    assert [r["id"] for r in revisions["revisions"]] == [second["id"], first["id"]]

    response = await admin_client.get(f"/api/v1/revisions/{first['id']}", headers=headers)
    assert response.content_type == "application/yaml"
    assert await response.text() == first_text
    for query, field in (("format=JSON", "format"), ("format=xml", "format"),
                         ("fromat=json", "fromat")):  # each was answered in YAML
        response = await admin_client.get(f"/api/v1/revisions/{first['id']}?{query}",
                                          headers=headers)
        assert response.status == 422, query
        assert [d["field"] for d in (await response.json())["error"]["details"]] == [field]
    response = await admin_client.get(f"/api/v1/revisions/{first['id']}?format=yaml",
                                      headers=headers)
    assert await response.text() == first_text

    response = await admin_client.get(
        f"/api/v1/revisions/{first['id']}/diff/{second['id']}", headers=headers)
    diff = await response.text()
    assert f"--- lifecycle@r{first['id']}" in diff
    assert "-      sender: [bad@evil.test]" in diff and "+      sender: [worse@evil.test]" in diff


async def test_activation_reaches_a_listener_and_rollback_works(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    _, first = await upload(admin_client, admin_key, policy("notified"))
    _, second = await upload(admin_client, admin_key, policy("notified", "other@evil.test"))
    listener = await asyncpg.connect(database_url)
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(POLICY_CHANNEL, lambda *args: received.put_nowait(args[3]))
    try:
        for revision in (first, second):
            response = await admin_client.post(f"/api/v1/revisions/{revision['id']}/activate",
                                               headers=bearer(admin_key))
            assert response.status == 200
            assert (await response.json())["active"] is True
            assert await asyncio.wait_for(received.get(), 5) == "activated"
        response = await admin_client.post("/api/v1/policies/notified/rollback",
                                           headers=bearer(admin_key))
        assert response.status == 200
        assert (await response.json())["id"] == first["id"]
        assert await asyncio.wait_for(received.get(), 5) == "activated"
    finally:
        await listener.close()
    conn = await connect(database_url)
    try:
        sources = dict(await fetch_active_sources(conn))
        actions = [r["action"] for r in await conn.fetch(
            "SELECT action FROM admin_audit WHERE target LIKE 'notified@%' ORDER BY id")]
    finally:
        await conn.close()
    assert sources[f"notified@r{first['id']}"] == policy("notified")
    assert actions == ["policy.uploaded", "policy.uploaded", "policy.activated",
                       "policy.activated", "policy.rolled_back"]


async def test_activation_refused_when_the_set_would_not_load(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    _, one = await upload(admin_client, admin_key, policy("clash-a").replace(
        "clash-a-block", "shared-rule"))
    _, two = await upload(admin_client, admin_key, policy("clash-b").replace(
        "clash-b-block", "shared-rule"))
    ok = await admin_client.post(f"/api/v1/revisions/{one['id']}/activate",
                                 headers=bearer(admin_key))
    assert ok.status == 200
    refused = await admin_client.post(f"/api/v1/revisions/{two['id']}/activate",
                                      headers=bearer(admin_key))
    assert refused.status == 422
    assert "shared-rule" in str(await refused.json())


async def test_a_case_expecting_a_renamed_rule_is_uploaded_and_activated(
    admin_client: TestClient[Any, Any], admin_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As a milter loads it (a test never stops filtering): told in the log, not refused;
    `postwarden-policy check` and `test`, where the tests run, refuse it at its line."""
    text = policy("renamed").replace("renamed-block", "renamed-block-v2") + (
        "tests:\n  - name: t\n    raw: \"Subject: x\\n\\nhi\\n\"\n    sender: bad@evil.test\n"
        "    recipients: [a@b.test]\n    expect: reject\n    expect_rules: [renamed-block]\n")
    status, revision = await upload(admin_client, admin_key, text)
    assert status == 201
    response = await admin_client.post(f"/api/v1/revisions/{revision['id']}/activate",
                                       headers=bearer(admin_key))
    assert response.status == 200
    assert "upload:15:20: test 't': unknown rule 'renamed-block' in expect_rules" in caplog.text


async def _test_exe_sample(client: TestClient[Any, Any], key: str, policy_text: str,
                           client_ip: str) -> Any:
    """POST /api/v1/policies/test with the example executable sample; its verdict."""
    form = aiohttp.FormData()
    form.add_field("message", (EXAMPLES / "samples" / "exe-attachment.eml").read_bytes(),
                   filename="m.eml", content_type="message/rfc822")
    form.add_field("policy", policy_text)
    form.add_field("sender", "someone@elsewhere.test")
    form.add_field("recipients", "alice@example.com")
    form.add_field("client_ip", client_ip)
    response = await client.post("/api/v1/policies/test", data=form, headers=bearer(key))
    assert response.status == 200, await response.text()
    return await response.json()


async def test_policy_test_route_gives_the_verdict(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    verdict = await _test_exe_sample(admin_client, admin_key, policy("exe").replace(
        "sender: [bad@evil.test]", 'attachment: {filename: ["*.exe"]}'), "198.51.100.7")
    assert verdict["action"] == "reject"
    assert verdict["smtp_reply"].startswith("550 5.7.1")
    assert verdict["rules"]


async def test_policy_test_route_reads_the_client_address_as_the_milter_does(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    verdict = await _test_exe_sample(admin_client, admin_key, policy("brackets").replace(
        "sender: [bad@evil.test]", "client_ip: [198.51.100.0/24]"),
        "[198.51.100.7]")  # as Postfix may write it
    assert verdict["rules"] == ["brackets-block"]


async def test_policy_test_route_reports_bad_fields(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    form = aiohttp.FormData()
    form.add_field("client_ip", "not-an-ip")
    # Neither is an address (the CLI's eval refuses them): tested, they met the policies
    # as no message ever does.
    form.add_field("sender", "Alice <alice@example.com>")
    form.add_field("recipients", "bob@example.com, nobody")
    form.add_field("policy", policy("formtest"))
    response = await admin_client.post("/api/v1/policies/test", data=form,
                                       headers=bearer(admin_key))
    assert response.status == 422
    fields = {d["field"] for d in (await response.json())["error"]["details"]}
    assert fields == {"message", "client_ip", "sender", "recipients"}


async def test_policy_test_route_refuses_a_policy_file_that_is_not_utf8(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # Its bytes were replaced: müller@ in Latin-1 became m\ufffdller@, and the verdict
    # was that of a policy matching no sender (an upload of the file is refused).
    form = aiohttp.FormData()
    form.add_field("message", b"Subject: t\r\n\r\nbody\r\n", filename="m.eml")
    form.add_field("policy", policy("latin", "m\u00fcller@evil.test").encode("latin-1"),
                   filename="p.yaml")
    form.add_field("sender", "someone@elsewhere.test")
    response = await admin_client.post("/api/v1/policies/test", data=form,
                                       headers=bearer(admin_key))
    assert response.status == 422
    assert (await response.json())["error"]["details"] == [{
        "field": "policy", "file": "upload", "line": 7, "column": 17,
        "message": "cannot read: byte 0xfc is not UTF-8 text",
    }]


async def test_policy_test_route_refuses_a_field_it_does_not_take(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # A misspelt revision_id was dropped: the message was tested against the active set.
    form = aiohttp.FormData()
    form.add_field("message", b"Subject: t\r\n\r\nbody\r\n", filename="m.eml")
    form.add_field("revison_id", "1")
    form.add_field("recipient", "alice@example.com")
    response = await admin_client.post("/api/v1/policies/test", data=form,
                                       headers=bearer(admin_key))
    assert response.status == 422
    assert (await response.json())["error"]["details"] == [
        {"field": "recipient", "message": "unknown field"},
        {"field": "revison_id", "message": "unknown field"}]


async def test_policy_test_route_refuses_a_field_given_twice(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # The last copy was taken: a second sender, or message, was tested, unsaid.
    form = aiohttp.FormData()
    for _ in range(2):
        form.add_field("message", b"Subject: t\r\n\r\nbody\r\n", filename="m.eml")
    form.add_field("sender", "bad@evil.test")
    form.add_field("sender", "someone@elsewhere.test")
    form.add_field("policy", policy("twice"))
    response = await admin_client.post("/api/v1/policies/test", data=form,
                                       headers=bearer(admin_key))
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["details"] == [
        {"field": "message", "message": "given more than once"},
        {"field": "sender", "message": "given more than once"}]


async def test_policy_test_route_refuses_a_policy_and_a_revision_at_once(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # The revision was dropped unseen (unread: any value passed), the upload tested.
    form = aiohttp.FormData()
    form.add_field("message", b"Subject: t\r\n\r\nbody\r\n", filename="m.eml")
    form.add_field("policy", policy("both"))
    form.add_field("revision_id", "1")
    response = await admin_client.post("/api/v1/policies/test", data=form,
                                       headers=bearer(admin_key))
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["details"] == [
        {"field": "revision_id", "message": "give policy or revision_id, not both"}]


async def test_policy_test_route_tells_an_unknown_revision_with_the_other_problems(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # A 404 for the revision alone dropped the problems found in the other fields.
    form = aiohttp.FormData()
    form.add_field("revision_id", str(2**62))
    form.add_field("sender", "nobody")
    response = await admin_client.post("/api/v1/policies/test", data=form,
                                       headers=bearer(admin_key))
    assert response.status == 422
    assert {d["field"] for d in (await response.json())["error"]["details"]} == {
        "message", "sender", "revision_id"}
    alone = aiohttp.FormData()
    alone.add_field("message", b"Subject: t\r\n\r\nbody\r\n", filename="m.eml")
    alone.add_field("revision_id", str(2**62))
    response = await admin_client.post("/api/v1/policies/test", data=alone,
                                       headers=bearer(admin_key))
    assert response.status == 404


async def test_concurrent_identical_uploads_store_one_revision(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    answers = await asyncio.gather(*[upload(admin_client, admin_key, policy("racing"))
                                     for _ in range(8)])
    assert sorted(status for status, _ in answers) == [200] * 7 + [201]
    assert len({body["id"] for _, body in answers}) == 1
    response = await admin_client.get("/api/v1/policies/racing/revisions",
                                      headers=bearer(admin_key))
    assert len((await response.json())["revisions"]) == 1


@pytest.mark.parametrize("revision_id", [0, -1, 2**63])
async def test_a_rollback_to_a_revision_id_no_revision_can_have_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str, revision_id: int
) -> None:
    # It was 404 "no such revision of this policy", as if one had been deleted, where a
    # deploy's activate refuses such an id (and the document declares minimum 1).
    await upload(admin_client, admin_key, policy("nonpositive"))
    response = await admin_client.post("/api/v1/policies/nonpositive/rollback",
                                       headers=bearer(admin_key),
                                       json={"revision_id": revision_id})
    assert response.status == 422, await response.text()
    assert [d["field"] for d in (await response.json())["error"]["details"]] == ["revision_id"]


async def test_a_rollback_with_a_misspelt_revision_id_changes_nothing(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # It rolled back to the revision before the active one, not to the one named.
    revisions = [(await upload(admin_client, admin_key, policy("misspelt", f"r{i}@evil.test")))[1]
                 for i in range(3)]
    response = await admin_client.post(f"/api/v1/revisions/{revisions[2]['id']}/activate",
                                       headers=bearer(admin_key))
    assert response.status == 200
    response = await admin_client.post("/api/v1/policies/misspelt/rollback",
                                       headers=bearer(admin_key),
                                       json={"revison_id": revisions[0]["id"]})
    assert response.status == 422
    assert (await response.json())["error"]["details"] == [
        {"field": "revison_id", "message": "unknown field"}]
    listed = await (await admin_client.get("/api/v1/policies", headers=bearer(admin_key))).json()
    (entry,) = [p for p in listed["policies"] if p["policy_name"] == "misspelt"]
    assert entry["active_revision"] == revisions[2]["id"]


async def test_the_active_revision_activated_again_raises_no_event(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    # It raised policy.activated and had every milter reload, though nothing changed: an
    # activation of the active revision, a Rules API change that wrote no new revision.
    headers = bearer(admin_key)
    conn = await connect(database_url)
    try:
        # The worker's guard refuses the loopback URL: nothing is sent anywhere.
        await add_endpoint(conn, "activations", "https://127.0.0.1:9/hook",
                           ["policy.activated"], None, kind="slack")
        _, revision = await upload(admin_client, admin_key, policy("again"))
        for _ in range(2):
            response = await admin_client.post(f"/api/v1/revisions/{revision['id']}/activate",
                                               headers=headers)
            assert response.status == 200
        rule = {"name": "again-rule", "when": {"sender": "x@evil.test"}, "then": "reject"}
        response = await admin_client.post("/api/v1/rules", json={"rule": rule},
                                           headers=headers)
        assert response.status == 201
        response = await admin_client.patch("/api/v1/rules/again-rule", json={"rule": rule},
                                            headers=headers)
        assert response.status == 200
        raised = await conn.fetch("SELECT payload->>'policy_name' AS name FROM webhook_events"
                                  " WHERE type = 'policy.activated' ORDER BY id")
    finally:
        await conn.close()
    assert [row["name"] for row in raised] == ["again", "database-rules"]


async def test_the_active_revision_activated_again_writes_no_admin_audit_entry(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    # Each wrote policy.activated (or policy.rolled_back) though nothing changed: the log
    # named an operator for an activation no milter saw. A deploy of it wrote none.
    headers = bearer(admin_key)
    _, revision = await upload(admin_client, admin_key, policy("unchanged"))
    for path, body in (
        (f"/api/v1/revisions/{revision['id']}/activate", None),
        (f"/api/v1/revisions/{revision['id']}/activate", None),
        ("/api/v1/policies/unchanged/rollback", {"revision_id": revision["id"]}),
    ):
        response = await admin_client.post(path, json=body, headers=headers)
        assert response.status == 200, await response.text()
    conn = await connect(database_url)
    try:
        actions = [row["action"] for row in await conn.fetch(
            "SELECT action FROM admin_audit WHERE target LIKE 'unchanged@%' ORDER BY id")]
    finally:
        await conn.close()
    assert actions == ["policy.uploaded", "policy.activated"]


async def test_a_parameter_the_upload_or_listing_does_not_know_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # A misspelt comment was dropped (the revision stored without its reason), a
    # misspelt limit gave a hundred revisions.
    response = await admin_client.post("/api/v1/policies", data=policy("misspelt").encode(),
                                       headers={**bearer(admin_key), **YAML},
                                       params={"commment": "why"})
    assert response.status == 422
    assert [d["field"] for d in (await response.json())["error"]["details"]] == ["commment"]
    status, _ = await upload(admin_client, admin_key, policy("misspelt"), "why")
    assert status == 201
    response = await admin_client.get("/api/v1/policies/misspelt/revisions",
                                      headers=bearer(admin_key), params={"limt": "1"})
    assert response.status == 422
    assert [d["field"] for d in (await response.json())["error"]["details"]] == ["limt"]


async def test_a_revision_position_of_0_is_refused_as_the_api_describes_it(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    """The OpenAPI says before is at least 1 (a revision id); 0 answered the first page."""
    await upload(admin_client, admin_key, policy("zeroth", "s@evil.test"))
    response = await admin_client.get("/api/v1/policies/zeroth/revisions",
                                      headers=bearer(admin_key), params={"before": "0"})
    assert response.status == 422
    assert [d["field"] for d in (await response.json())["error"]["details"]] == ["before"]


async def test_every_revision_of_a_policy_can_be_listed_page_by_page(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # Only the newest 1000 could be listed: the Rules API writes one per change, and
    # an older revision's id, to roll back to, could not be found.
    ids = [(await upload(admin_client, admin_key, policy("paged", f"s{n}@evil.test")))[1]["id"]
           for n in range(5)]
    listed: list[int] = []
    params = {"limit": "2"}
    for _ in range(5):
        response = await admin_client.get("/api/v1/policies/paged/revisions",
                                          headers=bearer(admin_key), params=params)
        assert response.status == 200, await response.text()
        page = await response.json()
        listed += [r["id"] for r in page["revisions"]]
        if page["next_before"] is None:
            break
        params = {"limit": "2", "before": str(page["next_before"])}
    assert listed == ids[::-1]


async def test_a_page_of_revisions_of_no_policy_is_a_404(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # With before, a misspelt name was 200 with no revisions: "none older than that".
    response = await admin_client.get("/api/v1/policies/never-uploaded/revisions",
                                      headers=bearer(admin_key), params={"before": "5"})
    assert response.status == 404, await response.text()
    assert (await response.json())["error"]["code"] == "not_found"
    await upload(admin_client, admin_key, policy("onlyone", "s@evil.test"))
    oldest = await admin_client.get("/api/v1/policies/onlyone/revisions",
                                    headers=bearer(admin_key), params={"before": "1"})
    assert oldest.status == 200, await oldest.text()
    assert await oldest.json() == {"revisions": [], "next_before": None}


async def test_a_long_name_to_deactivate_is_given_back_cut(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # It was echoed whole: a path of 5000 characters came back in the 409, a body's
    # names each in full, twice for one named twice.
    name = "x" * 5000
    alone = await admin_client.post(f"/api/v1/policies/{name}/deactivate",
                                    headers=bearer(admin_key))
    twice = await admin_client.post("/api/v1/policies/deploy", headers=bearer(admin_key),
                                    json={"deactivate": [name, name]})
    for response, status in ((alone, 404), (twice, 422)):
        assert response.status == status, await response.text()
        text = await response.text()
        assert "x" * 80 in text and "x" * 81 not in text


async def test_a_policy_never_uploaded_is_no_policy_to_deactivate(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # It was 409 no_active_policy, "'polcy' is not active", for a misspelt name, as if
    # that policy existed; one uploaded and not active still is.
    await upload(admin_client, admin_key, policy("resting"))
    alone = await admin_client.post("/api/v1/policies/polcy/deactivate",
                                    headers=bearer(admin_key))
    assert alone.status == 404, await alone.text()
    deploy = await admin_client.post("/api/v1/policies/deploy", headers=bearer(admin_key),
                                     json={"deactivate": ["resting", "polcy"]})
    assert deploy.status == 404, await deploy.text()
    assert (await deploy.json())["error"]["details"] == [
        {"field": "deactivate[1]", "message": "no policy 'polcy'"}]
    resting = await admin_client.post("/api/v1/policies/resting/deactivate",
                                      headers=bearer(admin_key))
    assert resting.status == 409
