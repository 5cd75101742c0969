"""``Idempotency-Key``: one message per key and request, the stored answer for retries.

A request with a key first *claims* it in its own short transaction (state
``in_progress``), under the id its message will get. The enqueue statement
turns the record into ``done`` with the answer; a refused request releases
its claim so a corrected retry can run. A claim left behind by a crashed (or
stalled) request can be taken over after ``STALE_CLAIM``; enqueue and
release then act only for the claim they hold (migration
``0010_idempotency_fence``), so one key never sends twice. Finished records
count for ``RETENTION``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from .refusals import Refusal
from .request_model import read_fields

MAX_KEY_LENGTH = 255
# Visible ASCII, as in the IETF draft's examples.
_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")
STALE_CLAIM = dt.timedelta(minutes=5)
RETENTION = dt.timedelta(hours=24)

CLAIM = """
INSERT INTO send_idempotency (key_id, idempotency_key, request_sha256, state, claim_id)
VALUES ($1, $2, $3, 'in_progress', $6)
ON CONFLICT (key_id, idempotency_key) DO UPDATE
SET request_sha256 = EXCLUDED.request_sha256, state = 'in_progress',
    response_status = NULL, response_body = NULL, created_at = now(),
    claim_id = EXCLUDED.claim_id
WHERE (send_idempotency.state = 'in_progress'
       AND send_idempotency.created_at < now() - $4::interval)
   OR send_idempotency.created_at < now() - $5::interval
RETURNING true
"""
SELECT = """
SELECT request_sha256, state, response_status, response_body
FROM send_idempotency WHERE key_id = $1 AND idempotency_key = $2
"""
RELEASE = """
DELETE FROM send_idempotency
WHERE key_id = $1 AND idempotency_key = $2 AND state = 'in_progress' AND claim_id = $3
"""
PURGE = "DELETE FROM send_idempotency WHERE created_at < now() - $1::interval"


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status: int
    body: dict[str, Any]


def valid_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


def request_digest(body: dict[str, Any]) -> bytes:
    """The same request as the service reads it (:func:`.request_model.read_fields`)
    gives the same digest, whatever its key order, spacing, nulls for fields left out,
    or a lone address given as a list of one."""
    canonical = json.dumps(read_fields(body), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).digest()


async def claim(
    conn: asyncpg.Connection, key_id: str, key: str, digest: bytes, claim_id: uuid.UUID
) -> StoredAnswer | None:
    """None when this request may go ahead (holding the claim ``claim_id``, the id
    its message will get); the stored answer of a finished twin.

    Raises the 422/409 refusal for a different request or one still running.
    """
    if await conn.fetchval(CLAIM, key_id, key, digest, STALE_CLAIM, RETENTION, claim_id):
        return None
    row = await conn.fetchrow(SELECT, key_id, key)
    if row is None:  # released between our two statements: the caller may retry
        raise Refusal.IDEMPOTENCY_IN_PROGRESS.error()
    if row["request_sha256"] != digest:
        raise Refusal.IDEMPOTENCY_KEY_REUSED.error()
    if row["state"] != "done":
        raise Refusal.IDEMPOTENCY_IN_PROGRESS.error()
    return StoredAnswer(row["response_status"], row["response_body"])


async def release(conn: asyncpg.Connection, key_id: str, key: str, claim_id: uuid.UUID) -> None:
    """Give the key back, unless another request has taken the claim over meanwhile."""
    await conn.execute(RELEASE, key_id, key, claim_id)


async def purge(conn: asyncpg.Connection) -> None:
    await conn.execute(PURGE, RETENTION)
