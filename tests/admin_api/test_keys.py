"""API keys: lifecycle over the API, uniform 401s, constant-time verification."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import jsonschema
import pytest
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from postwarden_admin_api import keys
from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.keys import split_key, verify_key
from postwarden_admin_api.settings import ServiceSettings
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer

from .test_cli import skewed_clock

UNAUTHENTICATED = {"code": "unauthenticated", "message": "a valid API key is required",
                   "details": []}


async def _status(client: TestClient[Any, Any], key: str) -> tuple[int, Any]:
    response = await client.get("/api/v1/settings", headers=bearer(key))
    return response.status, await response.json()


async def test_create_list_revoke_over_the_api(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    response = await admin_client.post("/api/v1/keys", headers=bearer(admin_key), json={
        "role": "operator", "name": "ci", "allowed_senders": [],
    })
    assert response.status == 201
    created = await response.json()
    key = created["key"]
    assert key.startswith(f"pw_{created['key_id']}_")
    assert (await _status(admin_client, key))[0] == 200

    listed = await (await admin_client.get("/api/v1/keys", headers=bearer(admin_key))).json()
    assert all("key" not in k and "secret_sha256" not in k for k in listed["keys"])
    assert key.split("_", 2)[2] not in str(listed)

    response = await admin_client.delete(f"/api/v1/keys/{created['key_id']}",
                                         headers=bearer(admin_key))
    assert response.status == 200
    assert (await response.json())["revoked_at"] is not None
    assert await _status(admin_client, key) == (401, {"error": UNAUTHENTICATED})


async def test_a_whole_key_where_its_id_belongs_is_revoked(
    admin_client: TestClient[Any, Any], admin_key: str, mint_key: MintKey
) -> None:
    # One pastes a leaked key to revoke it: looked up as an id, it was 404 and kept working.
    key = await mint_key(Role.SENDER, ["app@example.com"])
    response = await admin_client.delete(f"/api/v1/keys/{key}", headers=bearer(admin_key))
    assert response.status == 200
    assert (await response.json())["key_id"] == key.split("_")[1]
    assert await _status(admin_client, key) == (401, {"error": UNAUTHENTICATED})


API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


async def test_an_expired_key_is_revoked_and_a_revoked_one_is_404_as_a_deleted_webhook(
    admin_client: TestClient[Any, Any], admin_key: str, mint_key: MintKey
) -> None:
    # An expired key was revoked (200) by the route whose 404 said "no such active key",
    # which a revoked key (or one never made) got alike: the admin could not tell a key
    # revoked already from a mistyped id.
    expired = (await mint_key(Role.OPERATOR, expires_at=dt.datetime.now(dt.UTC)
                              - dt.timedelta(seconds=1))).split("_")[1]
    first = await admin_client.delete(f"/api/v1/keys/{expired}", headers=bearer(admin_key))
    assert first.status == 200
    revoked_at = (await first.json())["revoked_at"]
    assert revoked_at is not None
    again = await admin_client.delete(f"/api/v1/keys/{expired}", headers=bearer(admin_key))
    assert (again.status, (await again.json())["error"]) == (404, {
        "code": "not_found", "message": f"the key was revoked already, at {revoked_at}",
        "details": []})
    unknown = await admin_client.delete("/api/v1/keys/nosuchkey", headers=bearer(admin_key))
    assert (unknown.status, (await unknown.json())["error"]["message"]) == (404, "no such key")
    documented = " ".join(API_DOC.read_text().split())
    assert "expired key not revoked yet is revoked too (200)" in documented


async def test_create_reports_every_bad_field(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    response = await admin_client.post("/api/v1/keys", headers=bearer(admin_key), json={
        "role": "root", "name": "", "allowed_senders": "x", "expires_at": "soon", "extra": 1,
    })
    assert response.status == 422
    fields = {d["field"] for d in (await response.json())["error"]["details"]}
    assert fields == {"role", "name", "allowed_senders", "expires_at", "extra"}


async def test_a_names_length_is_counted_as_stored(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    """Its spaces around, which are stripped, were counted: 199 characters were refused."""
    async def create(name: str) -> tuple[int, Any]:
        response = await admin_client.post("/api/v1/keys", headers=bearer(admin_key),
                                           json={"role": "auditor", "name": name})
        return response.status, await response.json()

    status, created = await create(f"  {'n' * keys.NAME_MAX} ")
    assert (status, created["name"]) == (201, "n" * keys.NAME_MAX)
    status, refused = await create(f" {'n' * (keys.NAME_MAX + 1)} ")
    assert (status, refused["error"]["details"]) == (422, [
        {"field": "name", "message": f"expected 1..{keys.NAME_MAX} characters"}])


def _taken_by_key_name(name: str) -> bool:
    try:
        keys.key_name(name)
    except ValueError:
        return False
    return True


async def test_the_documented_name_schema_takes_what_the_service_takes(
    admin_client: TestClient[Any, Any]
) -> None:
    """Its maxLength counted the blanks around a name, which the service strips: a name
    of 200 characters with a space around, stored, was one a generated client refused."""
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    schema = document["components"]["schemas"]["NewApiKey"]["properties"]["name"]
    n = "n" * keys.NAME_MAX
    samples = ["", " ", "\u3000", "n", " n ", "a b", n, f"  {n} ", f"\u3000{n}\xa0",
               f" {n}n ", f"{n}n", f"n {n[2:]} n", f" n{' ' * keys.NAME_MAX}n "]
    differ = [name for name in samples
              if jsonschema.Draft202012Validator(schema).is_valid(name)
              != _taken_by_key_name(name)]
    assert differ == []


async def test_an_expiry_already_past_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # It was 201 with a key refused from its first use (a mistyped year), nothing said.
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    response = await admin_client.post("/api/v1/keys", headers=bearer(admin_key), json={
        "role": "auditor", "name": "late", "expires_at": past})
    assert response.status == 422
    assert (await response.json())["error"]["details"] == [
        {"field": "expires_at", "message": "must be in the future: the key would never work"}]



async def test_an_expiry_past_by_the_databases_clock_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With this machine's clock two hours slow it was 201, the key refused from its first use.
    monkeypatch.setattr(keys, "dt", skewed_clock(-dt.timedelta(hours=2)))
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    response = await admin_client.post("/api/v1/keys", headers=bearer(admin_key), json={
        "role": "auditor", "name": "late", "expires_at": past})
    assert response.status == 422
    assert (await response.json())["error"]["details"] == [
        {"field": "expires_at", "message": "must be in the future: the key would never work"}]


@pytest.mark.parametrize("hidden", ["\u200b", "\u202e", "\u2066", "\u2069", "\ufeff",
                                    "\u2028"])
async def test_a_key_name_with_an_invisible_or_bidi_character_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str, hidden: str
) -> None:
    # They were stored: "ci\u202egol" is listed as "cilog", a zero-width space makes
    # two keys of one name to the eye.
    response = await admin_client.post("/api/v1/keys", headers=bearer(admin_key),
                                       json={"role": "auditor", "name": f"ci{hidden}gol"})
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["details"] == [
        {"field": "name", "message": "control, invisible and bidi characters are not allowed"}]
    escaped = hidden.encode("unicode_escape").decode()  # as `keys list` shows one stored
    assert keys.shown_name(f"ci{hidden}gol") == f"ci{escaped}gol"


@pytest.mark.parametrize("role", [[], {}, ["admin"]], ids=["list", "object", "list of one"])
async def test_a_role_that_is_no_string_is_a_field_error(
    admin_client: TestClient[Any, Any], admin_key: str, role: object
) -> None:
    # It was a 500: a list is unhashable, and the check looked it up in a set.
    response = await admin_client.post("/api/v1/keys", headers=bearer(admin_key),
                                       json={"role": role, "name": "n"})
    assert response.status == 422
    assert [d["field"] for d in (await response.json())["error"]["details"]] == ["role"]


async def test_rotation_keeps_old_key_for_the_grace_period(
    admin_client: TestClient[Any, Any], admin_key: str, mint_key: MintKey
) -> None:
    old = await mint_key(Role.OPERATOR)
    old_id = old.split("_")[1]
    response = await admin_client.post(f"/api/v1/keys/{old_id}/rotate",
                                       headers=bearer(admin_key), json={"grace_seconds": 3600})
    assert response.status == 201
    new = (await response.json())["key"]
    assert (await _status(admin_client, old))[0] == 200
    assert (await _status(admin_client, new))[0] == 200

    response = await admin_client.post(f"/api/v1/keys/{new.split('_')[1]}/rotate",
                                       headers=bearer(admin_key), json={"grace_seconds": 0})
    newest = (await response.json())["key"]
    assert (await _status(admin_client, new))[0] == 401
    assert (await _status(admin_client, newest))[0] == 200
    # One line, named by its first key: whose sent messages each of them sees.
    listed = await (await admin_client.get("/api/v1/keys", headers=bearer(admin_key))).json()
    owners = {k["key_id"]: k["owner"] for k in listed["keys"]}
    assert [owners[key.split("_")[1]] for key in (old, new, newest)] == [old_id] * 3


async def test_every_bad_key_gets_the_same_401(
    aiohttp_client: AiohttpClient, make_admin_settings: Callable[..., ServiceSettings],
    mint_key: MintKey, admin_key: str
) -> None:
    # The fallback key on, to show that an existing admin key still turns it off.
    admin_client = await aiohttp_client(create_app(make_admin_settings(development_key=True)))
    good = await mint_key(Role.OPERATOR)
    expired = await mint_key(Role.OPERATOR, expires_at=dt.datetime.now(dt.UTC)
                             - dt.timedelta(seconds=1))
    key_id, secret = split_key(good) or ("", "")
    bad_keys = [
        f"pw_{key_id}_{secret[:-1]}x",  # known id, wrong secret
        f"pw_ffffffffffffffff_{secret}",  # unknown id
        expired,
        "pw_",
        "not-a-key",
        "dev-admin-key",  # an admin key exists in this database
        "x" * 500,
    ]
    for key in bad_keys:
        assert await _status(admin_client, key) == (401, {"error": UNAUTHENTICATED}), key
    response = await admin_client.get("/api/v1/settings")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


class _RecordedConnection:
    """A connection that passes every query on and records it: (method, arguments)."""

    QUERIES = ("fetch", "fetchrow", "fetchval", "execute", "executemany", "prepare")

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.queries: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.conn, name)
        if name not in self.QUERIES:
            return attribute

        async def recorded(*args: Any, **kwargs: Any) -> Any:
            self.queries.append((name, args))
            return await attribute(*args, **kwargs)

        return recorded


async def test_unknown_id_and_wrong_secret_do_the_same_work(
    database_url: str, mint_key: MintKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By doing the same work, call by call (SECURITY.md names this test): no early exit
    on the key id; both paths do one lookup by id, hash the presented secret once and
    compare it once, in constant time, with a digest of the same length (the stored one
    or a dummy). The times themselves are measured by bench/key_lookup_timing.py, not
    asserted here."""
    digests: list[bytes] = []
    comparisons: list[tuple[int, int]] = []

    def sha256(data: bytes = b"") -> Any:
        digests.append(data)
        return hashlib.sha256(data)

    def compare_digest(a: bytes, b: bytes) -> bool:
        comparisons.append((len(a), len(b)))
        return hmac.compare_digest(a, b)

    good = await mint_key(Role.AUDITOR)
    # keys' own references to the modules, so nothing else sees the spies
    monkeypatch.setattr(keys, "hashlib", SimpleNamespace(sha256=sha256))
    monkeypatch.setattr(keys, "hmac", SimpleNamespace(compare_digest=compare_digest))
    key_id, secret = split_key(good) or ("", "")
    wrong_secret = f"{secret[:-2]}zz"
    unknown_id = "0" * 16
    presented = {"wrong secret": (key_id, wrong_secret), "unknown id": (unknown_id, secret),
                 "right key": (key_id, secret)}  # the path that succeeds, for comparison
    conn = await connect(database_url)
    work: dict[str, Any] = {}
    try:
        for label, (key, key_secret) in presented.items():
            recorded = _RecordedConnection(conn)
            digests.clear()
            comparisons.clear()
            principal = await verify_key(cast(asyncpg.Connection, recorded),
                                         f"pw_{key}_{key_secret}")
            assert (principal is None) == (label != "right key"), label
            work[label] = (recorded.queries, list(digests), list(comparisons))
    finally:
        await conn.close()
    for label, (key, key_secret) in presented.items():
        queries, hashed, compared = work[label]
        assert queries == [("fetchrow", (keys.SELECT_FOR_AUTH, key))], label  # one lookup
        assert hashed == [key_secret.encode()], label  # one digest, of the presented secret
        assert compared == [(32, 32)], label  # one comparison, digests of equal length


async def test_an_expired_key_is_not_rotated_like_a_revoked_one(
    admin_client: TestClient[Any, Any], admin_key: str, mint_key: MintKey
) -> None:
    expired = await mint_key(Role.OPERATOR, expires_at=dt.datetime.now(dt.UTC)
                             - dt.timedelta(seconds=1))
    revoked = await mint_key(Role.OPERATOR)
    revoked_id = revoked.split("_")[1]
    await admin_client.delete(f"/api/v1/keys/{revoked_id}", headers=bearer(admin_key))
    before = await (await admin_client.get("/api/v1/keys", headers=bearer(admin_key))).json()
    answers = []
    for key_id in (expired.split("_")[1], revoked_id):
        response = await admin_client.post(f"/api/v1/keys/{key_id}/rotate",
                                           headers=bearer(admin_key), json={})
        answers.append((response.status, (await response.json())["error"]["code"]))
    assert answers == [(404, "not_found")] * 2
    after = await (await admin_client.get("/api/v1/keys", headers=bearer(admin_key))).json()
    assert after == before


async def test_a_key_rotated_before_is_not_rotated_again(
    admin_client: TestClient[Any, Any], admin_key: str, mint_key: MintKey
) -> None:
    # A second rotation (a retry of one whose answer was lost, or one to end the grace
    # period of a key found leaked) made a key that expired with the first one's grace.
    old_id = (await mint_key(Role.OPERATOR)).split("_")[1]
    rotate = f"/api/v1/keys/{old_id}/rotate"
    first = await admin_client.post(rotate, headers=bearer(admin_key),
                                    json={"grace_seconds": 3600})
    successor = (await first.json())["key_id"]
    before = await (await admin_client.get("/api/v1/keys", headers=bearer(admin_key))).json()
    again = await admin_client.post(rotate, headers=bearer(admin_key), json={"grace_seconds": 0})
    assert again.status == 409
    error = (await again.json())["error"]
    assert error["code"] == "already_rotated"
    assert successor in error["message"]
    after = await (await admin_client.get("/api/v1/keys", headers=bearer(admin_key))).json()
    assert after == before


@pytest.mark.parametrize("name", ["Authorization", "X-Api-Key"])
async def test_a_key_header_given_twice_is_a_400_whatever_the_order(
    admin_client: TestClient[Any, Any], admin_key: str, name: str
) -> None:
    # The first copy was used: a proxy in front that checks the last would disagree.
    value = f"Bearer {admin_key}" if name == "Authorization" else admin_key
    wrong = "Bearer pw_wrong" if name == "Authorization" else "pw_wrong"
    for pair in ((value, wrong), (wrong, value)):
        headers = CIMultiDict([(name, pair[0]), (name, pair[1])])
        response = await admin_client.get("/api/v1/keys", headers=headers)
        assert response.status == 400
        assert (await response.json())["error"] == {
            "code": "bad_request", "message": f"{name} given more than once", "details": []}


async def test_an_allowed_sender_given_twice_is_kept_once(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # Lower-cased, "A@B.example" and "a@b.example" were stored and listed as two.
    created = await admin_client.post("/api/v1/keys", headers=bearer(admin_key), json={
        "role": "sender", "name": "twice",
        "allowed_senders": ["A@B.example", "a@b.example", "*@c.example"]})
    assert created.status == 201, await created.text()
    assert (await created.json())["allowed_senders"] == ["a@b.example", "*@c.example"]
    settings = await admin_client.put("/api/v1/settings", headers=bearer(admin_key), json={
        "allowed_sender_addresses": ["*@C.example", "*@c.example"]})
    assert (await settings.json())["allowed_sender_addresses"] == ["*@c.example"]
    await admin_client.put("/api/v1/settings", headers=bearer(admin_key),
                           json={"allowed_sender_addresses": None})  # the module's database


@pytest.mark.parametrize(("role", "senders", "message"), [
    ("sender", [], "a sender key sends only as its allowed senders: give at least one"),
    ("operator", ["a@b.example"], "only sender and admin keys send: an operator key takes none"),
    ("auditor", ["a@b.example"], "only sender and admin keys send: an auditor key takes none"),
])
async def test_allowed_senders_a_role_cannot_use_are_refused(
    admin_client: TestClient[Any, Any], admin_key: str, role: str, senders: list[str],
    message: str,
) -> None:
    # A sender key without them never sent; an operator's were stored and never read.
    created = await admin_client.post("/api/v1/keys", headers=bearer(admin_key), json={
        "role": role, "name": "useless", "allowed_senders": senders})
    assert created.status == 422, await created.text()
    assert (await created.json())["error"]["details"] == [
        {"field": "allowed_senders", "message": message}]
    admin = await admin_client.post("/api/v1/keys", headers=bearer(admin_key), json={
        "role": "admin", "name": "sends", "allowed_senders": ["a@b.example"]})
    assert admin.status == 201, await admin.text()  # admin keys may send (docs/api.md)
