"""API keys: ``pw_<key id>_<secret>``; only the key id and SHA-256(secret) are stored.

Verification does the same work whatever is wrong with a key (one lookup by
id, one constant-time comparison against the stored hash or a dummy), so the
answer time does not tell an unknown id from a wrong secret. ``last_used_at``
is kept by the per-request admission statement (:mod:`.ratelimit`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

import asyncpg

from .addresses import sender_pattern
from .bodies import HIDDEN_REFUSED, TIME_EXPECTED, has_hidden, is_hidden, parse_time
from .context import Principal, Role

log = logging.getLogger(__name__)
PREFIX = "pw_"
SENDER_MAX = 320
NAME_MAX = 200
# How long a rotated key keeps working: a day unless told, at most 30 days.
DEFAULT_GRACE_SECONDS = 86400
MAX_GRACE_SECONDS = 30 * 86400
_DUMMY_HASH = hashlib.sha256(b"postwarden-no-such-key").digest()
PAST_EXPIRY = "must be in the future: the key would never work"

INSERT_KEY = """
INSERT INTO api_keys
    (key_id, secret_sha256, name, role, allowed_senders, expires_at, created_by, owner)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
# A key that works: not revoked, not expired (by the database's clock).
LIVE_KEY = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
SELECT_FOR_AUTH = f"""
SELECT key_id, secret_sha256, name, role, allowed_senders, owner, {LIVE_KEY} AS active
FROM api_keys WHERE key_id = $1
"""  # noqa: S608 - constant SQL
KEY_COLUMNS = (
    "key_id, name, role, allowed_senders, created_at, created_by, expires_at, revoked_at, "
    "rotated_to, last_used_at, owner"
)
IS_LIVE = f"SELECT {LIVE_KEY} FROM api_keys WHERE key_id = $1"  # noqa: S608 - constant SQL
# The development fallback key works only until a first key, of any role, exists
# (revoked ones too).
ANY_KEY_EXISTS = "SELECT EXISTS (SELECT FROM api_keys)"
SELECT_KEYS = f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id"  # noqa: S608
SELECT_KEY = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1"  # noqa: S608
SELECT_LIVE_KEYS = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE {LIVE_KEY} ORDER BY key_id"  # noqa: S608
# Locked, so a revocation racing the rotation cannot leave a revoked key a live successor.
SELECT_ACTIVE_KEY_FOR_UPDATE = f"""
SELECT {KEY_COLUMNS} FROM api_keys
WHERE key_id = $1 AND {LIVE_KEY}
FOR UPDATE
"""  # noqa: S608 - constant columns
REVOKE_KEY = """
UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL RETURNING key_id
"""
SHORTEN_EXPIRY = """
UPDATE api_keys
SET rotated_to = $2,
    expires_at = least(coalesce(expires_at, now() + $3::interval), now() + $3::interval)
WHERE key_id = $1
"""


class AlreadyRotated(Exception):
    """The key was rotated before: its expiry is now its grace period's end."""

    def __init__(self, successor: str) -> None:
        super().__init__(successor)
        self.successor = successor


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    name: str
    role: Role
    allowed_senders: tuple[str, ...]
    created_at: dt.datetime
    created_by: str | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    rotated_to: str | None
    last_used_at: dt.datetime | None
    owner: str  # the first key of its rotation line (migration 0030)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> KeyInfo:
        return cls(
            key_id=row["key_id"],
            name=row["name"],
            role=Role(row["role"]),
            allowed_senders=tuple(row["allowed_senders"]),
            created_at=row["created_at"],
            created_by=row["created_by"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            rotated_to=row["rotated_to"],
            last_used_at=row["last_used_at"],
            owner=row["owner"],
        )

    @property
    def problems(self) -> list[dict[str, str]]:
        """What is wrong with the key as stored, as a new key's 422 would say it: one made
        before the checks may have a name with hidden characters (`keys list` escapes
        them: shown_name), allowed senders its role never sends as (an operator's:
        refused by the send API all the same) or, a sender key, none (it sends nothing)."""
        found = []
        for field, check in (("name", lambda: key_name(self.name)),
                             ("allowed_senders",
                              lambda: check_role_senders(self.role, self.allowed_senders))):
            try:
                check()
            except ValueError as exc:
                found.append({"field": field, "message": str(exc)})
        return found


def allowed_sender(value: object) -> str:
    """A key's allowed sender as stored (an address or ``*@domain``, lower-cased);
    ValueError for one that matches no sender ("*@", "a@b@c", "*@*", "*@localhost"):
    an admin who meant "any sender" would get a key that sends nothing."""
    if not isinstance(value, str) or len(value) > SENDER_MAX:
        raise ValueError("expected an address")
    return sender_pattern(value)  # its AddressError is a ValueError


def check_role_senders(role: Role, allowed_senders: tuple[str, ...]) -> None:
    """ValueError for allowed senders that make no sense for ``role``: a sender key
    without any could never send, and only sender and admin keys may call the send API
    (an operator's or auditor's would be stored unused, as if they let it send)."""
    if role is Role.SENDER and not allowed_senders:
        raise ValueError("a sender key sends only as its allowed senders: give at least one")
    if allowed_senders and role not in (Role.SENDER, Role.ADMIN):
        raise ValueError(f"only sender and admin keys send: an {role.value} key takes none")


def key_name(value: object) -> str:
    """A key's name as stored: 1 to NAME_MAX characters, not blank, stripped, with no
    hidden character (`keys list` prints names to a terminal: see bodies.is_hidden); ValueError
    for anything else (the API's and the CLI's one check)."""
    # Counted as stored: its spaces around were counted too.
    if not isinstance(value, str) or not 1 <= len(name := value.strip()) <= NAME_MAX:
        raise ValueError(f"expected 1..{NAME_MAX} characters")
    if has_hidden(value):
        raise ValueError(HIDDEN_REFUSED)
    return name


def key_expiry(text: object) -> dt.datetime:
    """A new key's expiry as given (a time as :func:`~.bodies.parse_time` reads it) when
    it is still to come; ValueError, its text for the admin, otherwise. A time past (a
    year mistyped) made a key refused from its first use, with nothing said. Past by this
    machine's clock: the database's, which authentication reads, is checked by
    :func:`refuse_past_expiry` when the key is made."""
    try:
        if not isinstance(text, str):
            raise TypeError("not a string")
        value = parse_time(text)
    except (TypeError, ValueError):
        raise ValueError(TIME_EXPECTED) from None
    if value <= dt.datetime.now(dt.UTC):
        raise ValueError(PAST_EXPIRY)
    return value


def shown_name(name: str) -> str:
    """A stored name fit for a terminal: one stored before names were checked for
    hidden characters has them written as escapes."""
    return "".join(c.encode("unicode_escape").decode("ascii") if is_hidden(c) else c
                   for c in name)


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def split_key(presented: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    if not presented.startswith(PREFIX):
        return None
    key_id, sep, secret = presented[len(PREFIX):].partition("_")
    if not sep or not key_id or not secret or len(presented) > 200:
        return None
    return key_id, secret


def named_key_id(text: str) -> str:
    """The key id ``text`` names where one is asked for: itself, or the id of a whole key
    (pw_<key id>_<secret>), as one pastes a leaked key to revoke it; looked up as an id,
    it was "no active key", and the key kept working."""
    parts = split_key(text)
    return text if parts is None else parts[0]


async def create_key(
    conn: asyncpg.Connection,
    role: Role | str,
    name: str,
    allowed_senders: tuple[str, ...] | list[str] = (),
    expires_at: dt.datetime | None = None,
    *,
    created_by: str | None = None,
    owner: str | None = None,
) -> str:
    """Store a new key and return it in full; this is the only time it is visible.
    ``allowed_senders`` are stored once each (``A@x.org`` and ``a@x.org`` are one).
    ``owner``: the first key of the rotation line it continues (None: it begins one)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    await conn.execute(
        INSERT_KEY, key_id, _hash(secret), name, Role(role).value,
        list(dict.fromkeys(allowed_senders)), expires_at, created_by, owner,
    )
    return f"{PREFIX}{key_id}_{secret}"


async def verify_key(conn: asyncpg.Connection, presented: str) -> Principal | None:
    parts = split_key(presented)
    if parts is None:
        return None
    key_id, secret = parts
    row = await conn.fetchrow(SELECT_FOR_AUTH, key_id)
    expected = row["secret_sha256"] if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(_hash(secret), expected)
    if row is None or not matches or not row["active"]:
        return None
    return Principal(
        key_id=key_id,
        owner=row["owner"],
        name=row["name"],
        role=Role(row["role"]),
        allowed_senders=tuple(row["allowed_senders"]),
    )


async def is_live(conn: asyncpg.Connection, principal: Principal) -> bool:
    """Whether ``principal``'s key is still neither revoked nor expired: for work that
    outlasts the request's admission (an audit export streams for as long as it takes)."""
    if principal.is_dev_fallback:
        return not await conn.fetchval(ANY_KEY_EXISTS)
    return bool(await conn.fetchval(IS_LIVE, principal.key_id))


async def database_time(conn: asyncpg.Connection) -> dt.datetime:
    """The database's clock: the one authentication reads expiry by (LIVE_KEY)."""
    now: dt.datetime = await conn.fetchval("SELECT now()")
    return now


async def refuse_past_expiry(conn: asyncpg.Connection, expires_at: dt.datetime | None) -> None:
    """ValueError when a new key's expiry is past by the database's clock: with this
    machine's clock behind it, key_expiry took such a time, and the key never worked."""
    if expires_at is not None and expires_at <= await database_time(conn):
        raise ValueError(PAST_EXPIRY)


async def list_keys(conn: asyncpg.Connection) -> list[KeyInfo]:
    return [KeyInfo.from_row(row) for row in await conn.fetch(SELECT_KEYS)]


async def warn_of_problems(conn: asyncpg.Connection) -> None:
    """Log each working key's :attr:`KeyInfo.problems` by its id (its secret is not
    stored), at start-up, where an admin looks before GET /api/v1/keys shows them."""
    for row in await conn.fetch(SELECT_LIVE_KEYS):
        info = KeyInfo.from_row(row)
        for problem in info.problems:
            log.warning("API key %s (role %s) as stored: %s: %s; create a key in its "
                        "place and revoke this one (a rotation keeps its name and senders)",
                        info.key_id, info.role.value, problem["field"], problem["message"])


async def get_key(conn: asyncpg.Connection, key_id: str) -> KeyInfo | None:
    row = await conn.fetchrow(SELECT_KEY, key_id)
    return None if row is None else KeyInfo.from_row(row)


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> bool:
    """Whether the key was revoked now: an expired one is too, so it shows ended for good."""
    return await conn.fetchval(REVOKE_KEY, key_id) is not None


async def why_not_revoked(conn: asyncpg.Connection, key_id: str) -> str:
    """Why :func:`revoke_key` revoked nothing: a key revoked already is told apart from a
    mistyped id, which "no active key" said alike."""
    info = await get_key(conn, key_id)
    if info is None or info.revoked_at is None:
        return "no such key"
    return f"the key was revoked already, at {info.revoked_at.isoformat()}"


async def rotate_key(
    conn: asyncpg.Connection, key_id: str, grace: dt.timedelta, created_by: str | None = None
) -> str | None:
    """A new key with the same role and senders; the old one expires after ``grace``.

    None for an unknown, revoked or expired key: the successor would inherit
    the expiry (already past) and a dead key should stay dead. AlreadyRotated for
    a key in its grace period: a second successor would inherit the grace
    period's end as its expiry (the first one has the key's own).
    """
    async with conn.transaction():
        row = await conn.fetchrow(SELECT_ACTIVE_KEY_FOR_UPDATE, key_id)
        if row is None:
            return None
        old = KeyInfo.from_row(row)
        if old.rotated_to is not None:
            raise AlreadyRotated(old.rotated_to)
        new_key = await create_key(
            conn, old.role, old.name, old.allowed_senders, old.expires_at, created_by=created_by,
            owner=old.owner,
        )
        new_id = new_key[len(PREFIX):].partition("_")[0]
        await conn.execute(SHORTEN_EXPIRY, key_id, new_id, grace)
        return new_key
