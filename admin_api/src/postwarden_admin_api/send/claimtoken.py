"""The relay's claim token: a session advisory lock PostgreSQL holds for this process.

A claim's lease must outlast any submit under way (:mod:`.lease`), so the rows of a
service killed mid-batch would wait the whole lease for another claim; ``/proc``
(:mod:`.claimants`) tells a process gone only on its own host and PID namespace, not
in a restarted container or on another host. So each relay names its claims by a token
whose advisory lock it holds on a connection of its own (never the pool's, which would
hand it on or recycle it). PostgreSQL releases the lock when that connection ends:
the process died (its socket closed), a partition cut it off (once the server's TCP
keepalive gives the connection up), or the server restarted. Another instance that
can take the lock knows no session holds the token.

That alone is not proof the process sends nothing more: after a restart or a
partition it may still run, a submit under way. Hence a row is submitted only once
a statement on the token's connection (holding the lock, so in no window where
another took it) marked it ``sending_until`` a short while, renewed there while the
submit runs and the submit cut off before it could end unrenewed (:mod:`.mark`); a dead
token's rows are made due at once, but for those still within it. The token's connection is made
again, and its lock taken again, at the next claim or submit; one whose lock another
session still holds (our own old one, not yet given up) claims and submits nothing.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import Any

import asyncpg

from postwarden_admin_api.periodic import DB_ERRORS
from postwarden_store import detached

log = logging.getLogger(__name__)

# pg_advisory_lock(int4, int4): this class, and hashtext(token); "pwrc" in ASCII.
LOCK_CLASS = 0x70777263
TAKE = "SELECT pg_try_advisory_lock($1, hashtext($2))"
# The tokens of $1 no session holds: their locks, taken here, are kept until the
# caller's transaction ends, so none of them is taken again while it reclaims rows.
UNHELD = """
SELECT coalesce(array_agg(token), '{}') FROM unnest($1::text[]) AS token
WHERE pg_try_advisory_xact_lock($2, hashtext(token))
"""
CLOSE_SECONDS = 5.0  # a frozen server does not answer a graceful close


class Fenced(enum.Enum):
    SENDING = "sending"  # marked on the token's connection: it may be submitted
    LOST = "lost"  # no longer this claim's row
    UNPROVEN = "unproven"  # the token's lock is not held (the database away, say)


async def unheld(conn: asyncpg.Connection, tokens: list[str]) -> list[str]:
    """Those of ``tokens`` no session holds; inside a transaction of ``conn``'s."""
    found: list[str] = await conn.fetchval(UNHELD, tokens, LOCK_CLASS)
    return found


class ClaimToken:
    """``name``'s lock, held on a connection made as ``pool`` makes its own."""

    def __init__(self, pool: asyncpg.Pool, name: str) -> None:
        self.name = name
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._using = asyncio.Lock()  # one statement at a time on the connection
        self._refused = False  # said that another session holds the lock

    async def held(self) -> bool:
        """Whether the lock is held, taken now if it is not (raises when the database
        cannot be reached)."""
        async with self._using:
            return await self._holding() is not None

    async def fence(self, statement: str, *args: Any) -> Fenced:
        """Run ``statement`` (an UPDATE of one row) on the token's connection; a failed
        one ends it (made again next time)."""
        async with self._using:
            try:
                conn = await self._holding()
                if conn is None:
                    return Fenced.UNPROVEN
                status = await conn.execute(statement, *args)
            except DB_ERRORS:
                await self._drop()
                raise
        return Fenced.SENDING if status.endswith(" 1") else Fenced.LOST

    async def close(self) -> None:
        """End the connection: the lock is released with it."""
        async with self._using:
            await self._drop()

    async def _holding(self) -> asyncpg.Connection | None:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn = None
        conn = await detached(self._pool)
        try:
            taken = await conn.fetchval(TAKE, LOCK_CLASS, self.name)
        except BaseException:
            conn.terminate()
            raise
        if not taken:  # our session from before a partition, not yet ended by the server
            if not self._refused:
                log.warning("relay: another session still holds this relay's claim token: "
                            "nothing is claimed or sent until it ends")
            self._refused = True
            await _close(conn)
            return None
        self._conn, self._refused = conn, False
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close(conn)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=CLOSE_SECONDS)
    except DB_ERRORS:
        conn.terminate()
