"""``postwarden-admin policy push`` deploys what ``postwarden-policy check`` approves, as one
change: a directory check refuses uploads nothing, a set the service refuses activates
nothing, a rule may move between files, ``--prune`` removes policies deleted from git,
and ``database-rules`` stays the Rules API's. The service and the database are real;
the CLI runs as CI runs it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.cli import main as admin_main
from postwarden_policies.cli import main as policy_main
from postwarden_store import connect
from postwarden_store.policies import POLICY_CHANNEL
from tests.fixtures.adminapp import bearer

Client = TestClient[Any, Any]
RULE = "  - name: {rule}\n    when:\n      sender: [{rule}@evil.test]\n    then: reject\n"


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: the tests compare the whole active set."""
    return fresh_database_url


def write(directory: Path, file: str, name: str, *rules: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / file).write_text(
        f"version: 1\nname: {name}\nrules:\n" + "".join(RULE.format(rule=r) for r in rules))


async def push(client: Client, key: str, directory: Path, *options: str,
               monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("POSTWARDEN_API_KEY", key)
    argv = ["policy", "push", str(directory), "--url", str(client.make_url("")), *options]
    return await asyncio.to_thread(admin_main, argv)  # the CLI runs its own event loop


async def active(client: Client, key: str) -> dict[str, int]:
    listed = await (await client.get("/api/v1/policies", headers=bearer(key))).json()
    return {p["policy_name"]: p["active_revision"] for p in listed["policies"]
            if p["active_revision"]}


async def policies(client: Client, key: str) -> set[str]:
    """Every policy with a revision, active or not."""
    listed = await (await client.get("/api/v1/policies", headers=bearer(key))).json()
    return {p["policy_name"] for p in listed["policies"]}


async def test_a_policy_name_in_two_files_is_refused_as_check_refuses_it(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = tmp_path / "p"
    write(d, "a.yaml", "shared", "rule-a")
    write(d, "b.yaml", "shared", "rule-b")
    assert policy_main(["check", str(d)]) == 2
    checked = capsys.readouterr().err
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 1
    assert capsys.readouterr().err == checked
    assert f"{d / 'b.yaml'}:2:7: policy name 'shared' is also used at" in checked
    assert await policies(admin_client, admin_key) == set()  # nothing uploaded


async def _pushed_as_checked(
    d: Path, warning: str, admin_client: Client, admin_key: str, *,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """``check`` of ``d`` warns ``warning``; a push of it succeeds printing exactly what
    check printed."""
    assert policy_main(["check", str(d)]) == 0
    checked = capsys.readouterr().err
    assert warning in checked
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0
    assert capsys.readouterr().err == checked


async def test_a_subdirectory_not_loaded_is_warned_of_as_check_warns_of_it(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It went to logging, which the push does not set up: Python's last resort wrote it
    # without "warning:", where logging was set up elsewhere it went there or nowhere.
    d = tmp_path / "p"
    write(d, "a.yaml", "kept", "rule-a")
    write(d / "team-a", "b.yaml", "aside", "rule-b")
    await _pushed_as_checked(d, f"{d / 'team-a'}: warning: subdirectory not loaded",
                             admin_client, admin_key, monkeypatch=monkeypatch, capsys=capsys)
    assert await active(admin_client, admin_key) == {"kept": 1}


@pytest.mark.parametrize(("options", "code"), [
    pytest.param(["--strict"], 3, id="strict"),
    pytest.param(["--error-on", "bracketed_word"], 3, id="error-on-present"),
    pytest.param(["--dry-run", "--error-on", "bracketed_word"], 3, id="dry-run"),
    pytest.param(["--error-on", "case_folding"], 0, id="error-on-absent"),
])
async def test_a_warning_made_fatal_pushes_nothing_as_check_fails_on_it(
    tmp_path: Path, admin_client: Client, admin_key: str, *, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], options: list[str], code: int,
) -> None:
    # push had no --strict nor --error-on: a CI deploy went on past what check failed on.
    d = tmp_path / "p"
    d.mkdir()
    (d / "a.yaml").write_text("version: 1\nname: tagged\nrules:\n  - name: r\n"
                              "    when: {subject: '[SPAM]'}\n    then: reject\n")
    assert policy_main(["check", *options[-2:], str(d)]) == code
    checked = capsys.readouterr().err
    assert await push(admin_client, admin_key, d, *options, monkeypatch=monkeypatch) == code
    if code:
        assert capsys.readouterr().err == checked
        assert "fatal warning:" in checked
        assert await policies(admin_client, admin_key) == set()  # nothing uploaded
    else:
        assert await active(admin_client, admin_key) == {"tagged": 1}


async def test_a_value_a_comment_cut_short_is_warned_of_once_as_check_warns_of_it(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The upload's answer tells it again: printed, it doubled each of check's lines.
    d = tmp_path / "p"
    d.mkdir()
    (d / "a.yaml").write_text("version: 1\nname: cut\nrules:\n  - name: r\n"
                              "    then: reject\n    message: Ticket #12\n")
    await _pushed_as_checked(d, f"{d / 'a.yaml'}:6:14: warning: rule 'r': message: 'Ticket' "
                             "ends where",
                             admin_client, admin_key, monkeypatch=monkeypatch, capsys=capsys)
    assert await active(admin_client, admin_key) == {"cut": 1}


async def test_a_rule_name_in_two_files_uploads_nothing(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = tmp_path / "p"
    write(d, "a.yaml", "pol-a", "same-rule")
    write(d, "b.yaml", "pol-b", "same-rule")
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 1
    assert "rule name 'same-rule' is also used at" in capsys.readouterr().err
    assert await policies(admin_client, admin_key) == set()


async def test_a_set_the_service_refuses_activates_none_of_it(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The directory checks clean, but b.yaml's rule clashes with a policy that is active
    and not in the directory: a.yaml, fine on its own, must not go live either."""
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere, "outside.yaml", "outside", "taken")
    assert await push(admin_client, admin_key, elsewhere, monkeypatch=monkeypatch) == 0
    before = await active(admin_client, admin_key)
    d = tmp_path / "p"
    write(d, "a.yaml", "half-a", "fine")
    write(d, "b.yaml", "half-b", "taken")
    capsys.readouterr()
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 1
    assert await active(admin_client, admin_key) == before
    err = capsys.readouterr().err
    assert "deploy refused, nothing changed (422)" in err
    # The problem is named at the pushed file, not at a revision label.
    assert f"{d / 'b.yaml'}:4:11: rule name 'taken' is also used at outside@r" in err


async def test_a_rule_moved_between_files_deploys(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = tmp_path / "p"
    write(d, "a.yaml", "mv-a", "keep-a")
    write(d, "b.yaml", "mv-b", "keep-b", "moving")
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0
    first = await active(admin_client, admin_key)
    write(d, "a.yaml", "mv-a", "keep-a", "moving")
    write(d, "b.yaml", "mv-b", "keep-b")
    assert policy_main(["check", str(d)]) == 0
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0, \
        capsys.readouterr().err
    now = await active(admin_client, admin_key)
    assert set(now) == {"mv-a", "mv-b"}
    assert all(now[name] > first[name] for name in now)  # both new revisions are live


async def test_a_deleted_files_policy_stays_active_with_a_warning(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = tmp_path / "p"
    write(d, "keep.yaml", "del-keep", "del-keep-r")
    write(d, "gone.yaml", "del-gone", "del-gone-r")
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0
    (d / "gone.yaml").unlink()  # deleted in git
    capsys.readouterr()
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0
    assert set(await active(admin_client, admin_key)) == {"del-keep", "del-gone"}
    out, err = capsys.readouterr()
    assert "warning: active but not in" in err and "del-gone" in err
    assert f"{d / 'keep.yaml'}: active as revision" in out and "(unchanged)" in out


async def test_prune_deactivates_a_deleted_file_and_keeps_database_rules(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rule = {"name": "managed", "when": {"sender": ["m@evil.test"]}, "then": "reject"}
    created = await admin_client.post("/api/v1/rules", headers=bearer(admin_key),
                                      json={"rule": rule})
    assert created.status == 201, await created.text()
    d = tmp_path / "p"
    write(d, "keep.yaml", "del-keep", "del-keep-r")
    write(d, "gone.yaml", "del-gone", "del-gone-r")
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0
    assert "database-rules" not in capsys.readouterr().err  # not warned about either
    (d / "gone.yaml").unlink()  # deleted in git
    assert await push(admin_client, admin_key, d, "--prune", monkeypatch=monkeypatch) == 0
    assert set(await active(admin_client, admin_key)) == {"database-rules", "del-keep"}
    assert "del-gone: deactivated" in capsys.readouterr().out


async def test_suffixes_are_matched_without_regard_to_case(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    d = tmp_path / "p"
    write(d, "plain.yaml", "plain-suffix", "plain-r")
    write(d, "Block.YAML", "upper-suffix", "upper-r")
    write(d, "other.Yml", "mixed-suffix", "mixed-r")
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0
    assert set(await active(admin_client, admin_key)) == {"plain-suffix", "upper-suffix",
                                                          "mixed-suffix"}


MANAGED_SOURCE = ("version: 1\nname: database-rules\nlimits: {max_message_bytes: 1MB}\n"
                  "rules:\n" + RULE.format(rule="r1"))


async def test_database_rules_belongs_to_the_rules_api(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    headers = bearer(admin_key)
    uploaded = await admin_client.post("/api/v1/policies", data=MANAGED_SOURCE.encode(),
                                       headers={**headers, "Content-Type": "application/yaml"})
    assert uploaded.status == 422
    error = (await uploaded.json())["error"]
    assert error["code"] == "reserved_policy_name"
    assert (error["details"][0]["line"], error["details"][0]["column"]) == (2, 7)

    rule = {"name": "r2", "then": "accept", "when": {"sender": ["y@ok.test"]}}
    created = await admin_client.post("/api/v1/rules", headers=headers, json={"rule": rule})
    revision = (await created.json())["revision"]["id"]
    for path, body in [(f"/api/v1/revisions/{revision}/activate", None),
                       ("/api/v1/policies/deploy", {"activate": [revision]}),
                       ("/api/v1/policies/deploy", {"deactivate": ["database-rules"]}),
                       ("/api/v1/policies/database-rules/deactivate", None)]:
        response = await admin_client.post(path, headers=headers, json=body)
        assert response.status == 422, path
        assert (await response.json())["error"]["code"] == "reserved_policy_name", path

    d = tmp_path / "p"
    d.mkdir()
    (d / "managed.yaml").write_text(MANAGED_SOURCE)
    write(d, "other.yaml", "not-managed", "nm-r")
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 1
    assert f"{d / 'managed.yaml'}:2:7: policy name 'database-rules' is reserved" in \
        capsys.readouterr().err
    assert "not-managed" not in await policies(admin_client, admin_key)  # nothing uploaded
    assert await active(admin_client, admin_key) == {"database-rules": revision}


async def _upload(client: Client, key: str, name: str, rule: str) -> int:
    response = await client.post(
        "/api/v1/policies", headers={**bearer(key), "Content-Type": "application/yaml"},
        data=f"version: 1\nname: {name}\nrules:\n{RULE.format(rule=rule)}".encode())
    assert response.status == 201, await response.text()
    revision: int = (await response.json())["id"]
    return revision


async def test_deploy_and_deactivate_reload_the_milters_and_are_audited(
    admin_client: Client, admin_key: str, database_url: str
) -> None:
    one = await _upload(admin_client, admin_key, "api-one", "api-one-r")
    two = await _upload(admin_client, admin_key, "api-two", "api-two-r")
    listener = await asyncpg.connect(database_url)
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(POLICY_CHANNEL, lambda *args: received.put_nowait(args[3]))
    headers = bearer(admin_key)
    try:
        response = await admin_client.post("/api/v1/policies/deploy", headers=headers,
                                           json={"activate": [one, two]})
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["activated"] == [one, two] and body["deactivated"] == []
        assert [r["active"] for r in body["revisions"]] == [True, True]
        assert await asyncio.wait_for(received.get(), 5) == "activated"

        response = await admin_client.post("/api/v1/policies/api-one/deactivate",
                                           headers=headers)
        assert response.status == 200, await response.text()
        assert (await response.json())["deactivated"] == ["api-one"]
        assert await asyncio.wait_for(received.get(), 5) == "activated"
    finally:
        await listener.close()
    assert await active(admin_client, admin_key) == {"api-two": two}
    again = await admin_client.post("/api/v1/policies/api-one/deactivate", headers=headers)
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "no_active_policy"
    conn = await connect(database_url)
    try:
        audited = [(r["action"], r["target"]) for r in await conn.fetch(
            "SELECT action, target FROM admin_audit WHERE action LIKE 'policy.%activated' "
            "ORDER BY id")]
    finally:
        await conn.close()
    assert audited == [("policy.activated", f"api-one@r{one}"),
                       ("policy.activated", f"api-two@r{two}"),
                       ("policy.deactivated", f"api-one@r{one}")]


@pytest.mark.parametrize(("body", "status", "code"), [
    pytest.param({"activate": "all"}, 422, "validation_failed", id="not-a-list"),
    pytest.param({"activate": [True]}, 422, "validation_failed", id="bool-id"),
    pytest.param({"deactivate": [""]}, 422, "validation_failed", id="empty-name"),
    pytest.param({"extra": 1}, 422, "validation_failed", id="unknown-field"),
    pytest.param({"activate": [999999]}, 404, "not_found", id="no-such-revision"),
    # Never uploaded: 409 "is not active" passed a misspelt name for one that exists.
    pytest.param({"deactivate": ["never-uploaded"]}, 404, "not_found", id="no-such-policy"),
])
async def test_deploy_refuses_a_wrong_request(
    admin_client: Client, admin_key: str, body: dict[str, Any], status: int, code: str
) -> None:
    response = await admin_client.post("/api/v1/policies/deploy", headers=bearer(admin_key),
                                       json=body)
    assert response.status == status
    assert (await response.json())["error"]["code"] == code


async def test_deploy_refuses_two_changes_of_one_policy(
    admin_client: Client, admin_key: str
) -> None:
    first = await _upload(admin_client, admin_key, "twice", "twice-r")
    second = await _upload(admin_client, admin_key, "twice", "twice-r2")
    for body in ({"activate": [first, second]},
                 {"activate": [first], "deactivate": ["twice"]}):
        response = await admin_client.post("/api/v1/policies/deploy",
                                           headers=bearer(admin_key), json=body)
        assert response.status == 422
        details = (await response.json())["error"]["details"]
        assert details[0]["message"] == "policy 'twice' is also in activate[0]"
    assert await active(admin_client, admin_key) == {}
