"""Audit search: filters, keyset pagination (search and export) and dashboard stats.

The WHERE clause is assembled only from the constant fragments below, each
with its own ``$n`` parameter, so every filter can use its index (.sqlwhere).
Pages are keyed on ``(time, event_id)`` descending, so inserts of new events
never shift a page a client is walking.

Every read of ``audit_events`` runs through :func:`reading`, in a read-only
transaction whose statements are cut after ``STATEMENT_TIMEOUT_MS``: a reader
holds a lock on the table, and retention's DROP of an old partition cannot
start until every reader is done, so no search, export page or stats query
may hold one for ever. Reads of the admin audit log, which only grows, and the send
API's message search are cut the same way.
"""

from __future__ import annotations

import bisect
import datetime as dt
import ipaddress
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from postwarden_policies.conditions import IpNetwork, unmapped
from postwarden_policies.domains import ascii_domain, unicode_domain

from .bodies import parse_time, time_expected
from .cursors import Cursor
from .errors import ApiError, ValidationFailed, connection
from .sqlwhere import Where

STATEMENT_TIMEOUT_MS = 30_000
# Rows a page reads at a time: a few MiB at most of events that carry 128 KiB of
# changes, the page's budget (bodies.PAGE_MAX_BYTES) being met after a few batches.
ROWS_PREFETCH = 16
# A read's settings, for its transaction (see reading()). Every statement planned for its
# values: a search's is prepared once per pooled connection, and the generic plan
# PostgreSQL may keep after five runs guesses what a GIN filter matches and how much
# lies past a cursor; it read every match older than the cursor on every page.
SET_READ_SETTINGS = ("SELECT set_config('statement_timeout', $1, true), "
                     "set_config('plan_cache_mode', 'force_custom_plan', true)")

COLUMNS = (
    "event_id, time, instance, queue_id, message_uid, host(client_address) AS client_address, "
    "client_name, helo, auth_user, sender, recipients, header_from, message_id, subject, size, "
    "action, smtp_reply, rules, changes, policy_hash, duration_ms, flags, notify"
)
# The partial index on audit_refused(changes) holds only the events this says (braces
# doubled: a filter's fragment goes through str.format).
REFUSING = """changes @> '[{{"kind": "recipient_refused"}}]'"""
# filter name -> SQL fragment with one placeholder "{}" for its parameter number
FILTERS: Mapping[str, str] = {
    "since": "time >= ${}",
    "until": "time < ${}",
    "sender": "lower(sender) = lower(${})",
    # audit_lower() lower-cases each address, audit_refused() those refused at RCPT
    # (migration 0034); a GIN index serves each side
    "recipient": "(audit_lower(recipients) @> ARRAY[lower(${0}::text)] OR ("
                 f"{REFUSING} AND audit_refused(changes) @> ARRAY[lower(${{0}}::text)]))",
    "action": "action = ${}",
    "rule": "rules @> ARRAY[${}::text]",
    "queue_id": "queue_id = ${}",
    "message_uid": "message_uid = ${}",  # the X-Postwarden-Id header's value
    "message_id": "message_id = ${}",
    "client_address": "client_address = ${}::inet",  # one address (see _clause)
    "auth_user": "lower(auth_user) = lower(${})",  # the SASL login (migration 0035)
    # Stored lower-cased by Python (entityheaders.from_address): see _case_forms.
    "header_from": "lower(header_from) = lower(${})",
    "flag": "flags @> ARRAY[${}::text]",
}
# The client_address filter of a network, not one address. Postgres makes "<<=" an
# index range only for a constant, never for the parameter of a generic plan (one a
# cached statement may get): the range is written out, from the network itself to its
# broadcast address as a host (inet sorts a network before the hosts in it).
CLIENT_NETWORK = ("client_address >= ${0}::inet "
                  "AND client_address <= host(broadcast(${0}::inet))::inet "
                  "AND client_address <<= ${0}::inet")
# The address filters of an address with several forms, outside ASCII only: any of
# them (_forms). Only then: "= ANY" reads the sender index in no time order, so a
# page of a busy sender would sort all its events, where "=" stops at the page's end.
FORMS_FILTERS: Mapping[str, str] = {
    "sender": "lower(sender) = ANY(audit_lower(${}::text[]))",
    "header_from": "lower(header_from) = ANY(audit_lower(${}::text[]))",
    "recipient": "(audit_lower(recipients) && audit_lower(${0}::text[]) OR ("
                 f"{REFUSING} AND audit_refused(changes) && audit_lower(${{0}}::text[])))",
}
ACTIONS = ("accept", "reject", "tempfail", "discard", "quarantine", "aborted", "error")
TEXT_MAX = 998
# The filters an empty value means something to: the null sender. Any other matched no
# event (none is stored empty), and answered 200 and nothing, as if none matched: a
# client's unset variable (queue_id=$ID) read as a search.
MAY_BE_EMPTY = frozenset({"sender"})
EMPTY_FILTER = "empty: no event has it; leave the parameter out to match any"
NETWORK_EXPECTED = "expected an IP address or a CIDR network such as 192.0.2.0/24 or 2001:db8::/32"


def parse_filters(query: Mapping[str, str], found: Sequence[dict[str, Any]] = ()
                  ) -> dict[str, Any]:
    """Typed filter values from query parameters; every bad one is reported with the
    problems ``found`` in the others (and the unknown ones: bodies.QueryProblems, as a
    misspelt filter would widen the search to every event): one 422 lists them all."""
    values: dict[str, Any] = {}
    problems = list(found)
    for name in FILTERS:
        raw = query.get(name)
        if raw is None:
            continue
        if name in ("since", "until"):
            try:
                values[name] = parse_time(raw)
            except ValueError:
                problems.append({"field": name, "message": time_expected(raw)})
        elif name == "client_address":
            try:
                values[name] = _client_network(raw)
            except ValueError as exc:
                problems.append({"field": name, "message": str(exc)})
        elif name == "action" and raw not in ACTIONS:
            problems.append({"field": name, "message": f"expected one of {', '.join(ACTIONS)}"})
        elif len(raw) > TEXT_MAX or "\x00" in raw:
            problems.append({"field": name, "message": "invalid value"})
        elif not raw and name not in MAY_BE_EMPTY:
            problems.append({"field": name, "message": EMPTY_FILTER})
        elif name in ("sender", "recipient", "header_from"):
            values[name] = _unbracketed(raw)
        else:
            values[name] = raw
    problem = range_problem(values.get("since"), values.get("until"))
    if problem is not None:
        problems.append(problem)
    if problems:
        raise ValidationFailed(problems)
    return values


def _unbracketed(address: str) -> str:
    """An address filter as Postfix's log writes it too: ``from=<a@b>``, and ``<>`` for
    the null sender (stored as ""), pasted from there matched nothing."""
    if address.startswith("<") and address.endswith(">"):
        return address[1:-1]
    return address


def _client_network(raw: str) -> IpNetwork:
    """The client_address filter: an address (a network of one) or a CIDR network.
    ValueError, its text for the client, for a network with host bits set (naming the
    network meant: widening the search silently would pass for an answer) or anything
    else. An IPv4-mapped IPv6 address or network is its IPv4 form, as the milter
    records a mapped client address (and as policies' networks take it)."""
    # A zone index (fe80::1%eth0) names an interface of one host: no client's.
    if "%" in raw:
        raise ValueError(NETWORK_EXPECTED)
    try:
        interface = ipaddress.ip_interface(raw)
    except ValueError:
        raise ValueError(NETWORK_EXPECTED) from None
    network = unmapped(interface.network)
    if interface.ip != interface.network.network_address:
        raise ValueError(f"host bits set: the network is {network} "
                         "(an address without a prefix matches that address alone)")
    return network


def _forms(address: str) -> list[str]:
    """The spellings of ``address`` to search for: each of its :func:`_case_forms` with
    its domain in each of its :func:`_idn_forms`."""
    forms = (_idn_forms(form) or [form] for form in _case_forms(address))
    return list(dict.fromkeys(form for spellings in forms for form in spellings))


def _case_forms(address: str) -> list[str]:
    """``address`` and the spellings whose lower() a stored address's may be and its
    own not. PostgreSQL's lower() maps each letter alone: every Greek capital sigma
    (U+03A3) is the small one (U+03C3), where Python's str.lower(), by which the
    milter stores the From address, makes one ending a word the final sigma
    (U+03C2); so the index holds an address sent in capitals with the one, its From
    with the other, and a search in either must find both. Python lower-cases the
    dotted capital I (U+0130) as i and a combining dot above, which lower() keeps,
    and lower() as i (the milter stores a From's as i, and migration 0049 made the
    From of older rows so): the upper-cased form is composed (NFC) so that that
    spelling finds the envelope's capital. The address upper-cased letter by letter
    (not ß to SS: another address) and lower-cased by each gives them. Outside ASCII
    only: an ASCII address has one lower case."""
    if address.isascii():
        return [address]
    upper = unicodedata.normalize(
        "NFC", "".join(c.upper() if len(c.upper()) == 1 else c for c in address))
    return list(dict.fromkeys([address, address.lower(), upper, upper.lower()]))


def _idn_forms(address: str) -> list[str] | None:
    """``address`` with its domain in A-labels and in U-labels, when the domain is an IDN
    (else None): the milter stores the envelope as the client sent it, an SMTPUTF8
    client most often in U-labels, any other in A-labels."""
    local, at, domain = address.rpartition("@")
    if not at:
        return None
    try:
        encoded = ascii_domain(domain)
        decoded = unicode_domain(encoded)
    except UnicodeError:  # idna.IDNAError among them: no other form
        return None
    return None if decoded == encoded else [address, f"{local}@{encoded}", f"{local}@{decoded}"]


def range_problem(since: dt.datetime | None, until: dt.datetime | None
                  ) -> dict[str, str] | None:
    """The problem of a time range that holds no instant (search, export and stats)."""
    if since is not None and until is not None and since >= until:
        return {"field": "since", "message": "must be before until"}
    return None


def _clause(name: str, value: Any) -> tuple[str, Any]:
    """The fragment and parameter of one filter; an address's holds its every form
    (:func:`_forms`), a client network's spans its range. One address stays "=": the
    client index then gives its events in time order, and a page stops at its end."""
    if name == "client_address":
        if value.prefixlen < value.max_prefixlen:
            return CLIENT_NETWORK, str(value)
        return FILTERS[name], str(value.network_address)
    forms = _forms(value) if name in FORMS_FILTERS else [value]
    return (FILTERS[name], value) if len(forms) == 1 else (FORMS_FILTERS[name], forms)


def build_where(filters: Mapping[str, Any], cursor: Cursor | None) -> Where:
    where = Where()
    for name in FILTERS:
        if name in filters:
            where.add(*_clause(name, filters[name]))
    if cursor is not None:
        where.add("(time, event_id) < (${}, ${})", cursor.time, cursor.id)
    return where


def search_sql(filters: Mapping[str, Any], cursor: Cursor | None, limit: int
               ) -> tuple[str, list[Any]]:
    where = build_where(filters, cursor)
    sql = (f"SELECT {COLUMNS} FROM audit_events{where} "  # noqa: S608 - constant fragments
           f"ORDER BY time DESC, event_id DESC LIMIT {where.parameter(limit)}")
    return sql, where.params


def cursor_rows(conn: asyncpg.Connection, sql: str, params: Sequence[Any]
                ) -> AsyncIterable[asyncpg.Record]:
    """The rows of ``sql``, fetched ``ROWS_PREFETCH`` at a time (inside a transaction,
    :func:`reading`'s), for :func:`~.bodies.fill_page`: rows that may be large are held
    no more than a page."""
    rows: AsyncIterable[asyncpg.Record] = conn.cursor(sql, *params, prefetch=ROWS_PREFETCH)
    return rows


def search_rows(conn: asyncpg.Connection, filters: Mapping[str, Any], cursor: Cursor | None,
                limit: int) -> AsyncIterable[asyncpg.Record]:
    """The rows of :func:`search_sql` (:func:`cursor_rows`)."""
    return cursor_rows(conn, *search_sql(filters, cursor, limit))


@asynccontextmanager
async def reading(pool: asyncpg.Pool, *, one_snapshot: bool = False
                  ) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection in a read-only transaction whose every statement is cut
    after ``STATEMENT_TIMEOUT_MS`` (503 ``query_timeout``) and planned for its values
    (``SET_READ_SETTINGS``); with ``one_snapshot``, REPEATABLE READ: an answer of
    several statements (the stats) sees the log as it was at its first, not each
    statement the events committed by then.

    Per transaction, not a pool setting: the pool also serves the send API, the
    relay workers and retention, whose statements this limit is not meant for.
    """
    isolation = "repeatable_read" if one_snapshot else None
    try:
        async with connection(pool) as conn, conn.transaction(isolation=isolation,
                                                              readonly=True):
            await conn.execute(SET_READ_SETTINGS, str(STATEMENT_TIMEOUT_MS))
            yield conn
    except asyncpg.QueryCanceledError:
        raise ApiError(503, "query_timeout",
                       f"the query ran past {STATEMENT_TIMEOUT_MS / 1000:g} s; "
                       "narrow the time range or the filters") from None


async def database_now(pool: asyncpg.Pool) -> dt.datetime:
    """The database's clock, where a range ends when the client names no end: the admin
    host's may run behind the milters' that stamp the events (and retention goes by
    the database's), and the newest events were left out."""
    async with connection(pool) as conn:
        now: dt.datetime = await conn.fetchval("SELECT now()")
    return now


SELECT_ONE = f"SELECT {COLUMNS} FROM audit_events WHERE event_id = $1"  # noqa: S608

# Events per bucket (its 1-based index in the array of bucket starts, $3) and verdict.
STATS_SERIES = """
SELECT width_bucket(time, $3::timestamptz[]) AS bucket, action, count(*) AS n
FROM audit_events WHERE time >= $1 AND time < $2
GROUP BY 1, 2 ORDER BY 1, 2
"""
# Events per rule name, each event once per name (rows written before rule names were
# unique across a set may name one twice).
STATS_TOP_RULES = """
SELECT rule, count(*) AS n
FROM audit_events, LATERAL (SELECT DISTINCT rule FROM unnest(rules) AS rule) AS fired
WHERE time >= $1 AND time < $2
GROUP BY rule ORDER BY n DESC, rule LIMIT $3
"""


# Every UTC offset of tzdata since 1972 is a whole number of quarter hours: a zone's
# hours and days begin, and its offsets change, at a quarter hour of UTC.
_QUARTER = dt.timedelta(minutes=15)
_MARGIN = {"hour": dt.timedelta(hours=2), "day": dt.timedelta(days=2)}  # > a bucket


def _bucket_key(time: dt.datetime, bucket: str, zone: ZoneInfo) -> tuple[Any, ...]:
    """What the instants of one bucket share: their local hour or day; for an hour
    also the offset, so that an hour a DST change repeats is two buckets."""
    local = time.astimezone(zone)
    start = local.replace(minute=0, second=0, microsecond=0, tzinfo=None)
    if bucket == "day":
        return (start.replace(hour=0),)
    return start, local.utcoffset()


def bucket_starts(since: dt.datetime, until: dt.datetime, bucket: str, zone: ZoneInfo
                  ) -> list[dt.datetime]:
    """The first instants of the zone's hours or days (``bucket``) from the one holding
    ``since`` to ``until``.

    Worked out here, not by PostgreSQL's date_trunc(unit, time, zone): that labels the
    hour after a change of Australia/Lord_Howe's clocks (by 30 minutes) with an instant
    half an hour off, inside the hour before it."""
    time = (since - _MARGIN[bucket]).astimezone(dt.UTC)  # "+05:53" is a client's offset too
    time = time.replace(minute=time.minute // 15 * 15, second=0, microsecond=0)
    key = _bucket_key(time, bucket, zone)
    starts = []
    while time < until:
        time += _QUARTER
        if _bucket_key(time, bucket, zone) != key:
            key = _bucket_key(time, bucket, zone)
            starts.append(time)
    return starts[max(bisect.bisect_right(starts, since) - 1, 0):]


def event_json(row: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(row)
    data["event_id"] = str(data["event_id"])
    data["time"] = data["time"].isoformat()
    for key in ("recipients", "rules", "flags", "notify"):
        data[key] = list(data[key] or [])
    return data
