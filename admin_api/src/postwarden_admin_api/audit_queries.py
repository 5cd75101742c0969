"""Audit search: filters, keyset pagination (search and export) and dashboard stats.

The WHERE clause is assembled only from the constant fragments below, each
with its own ``$n`` parameter, so every filter can use its index (a generic
``$1 IS NULL OR ...`` form defeats the planner once plans are cached).
Pages are keyed on ``(time, event_id)`` descending, so inserts of new events
never shift a page a client is walking.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from .bodies import TIME_EXPECTED, parse_time
from .cursors import Cursor
from .errors import ValidationFailed

COLUMNS = (
    "event_id, time, instance, queue_id, message_uid, host(client_address) AS client_address, "
    "client_name, helo, auth_user, sender, recipients, header_from, message_id, subject, size, "
    "action, smtp_reply, rules, changes, policy_hash, duration_ms, flags, notify"
)
# filter name -> SQL fragment with one placeholder "{}" for its parameter number
FILTERS: Mapping[str, str] = {
    "since": "time >= ${}",
    "until": "time < ${}",
    "sender": "lower(sender) = lower(${})",
    # audit_lower() lower-cases each address; its GIN index serves this filter
    "recipient": "audit_lower(recipients) @> ARRAY[lower(${}::text)]",
    "action": "action = ${}",
    "rule": "rules @> ARRAY[${}::text]",
    "queue_id": "queue_id = ${}",
    "message_id": "message_id = ${}",
    "client_address": "client_address = ${}::inet",
}
ACTIONS = ("accept", "reject", "tempfail", "discard", "quarantine", "aborted", "error")
TEXT_MAX = 998


def parse_filters(query: Mapping[str, str]) -> dict[str, Any]:
    """Typed filter values from query parameters; every bad one is reported."""
    values: dict[str, Any] = {}
    problems: list[dict[str, Any]] = []
    for name in FILTERS:
        raw = query.get(name)
        if raw is None:
            continue
        if name in ("since", "until"):
            try:
                values[name] = parse_time(raw)
            except ValueError:
                problems.append({"field": name, "message": TIME_EXPECTED})
        elif name == "client_address":
            try:
                values[name] = str(ipaddress.ip_address(raw))
            except ValueError:
                problems.append({"field": name, "message": "expected an IP address"})
        elif name == "action" and raw not in ACTIONS:
            problems.append({"field": name, "message": f"expected one of {', '.join(ACTIONS)}"})
        elif len(raw) > TEXT_MAX or "\x00" in raw:
            problems.append({"field": name, "message": "invalid value"})
        else:
            values[name] = raw
    if problems:
        raise ValidationFailed(problems)
    return values


def build_where(filters: Mapping[str, Any], cursor: Cursor | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for name, fragment in FILTERS.items():
        if name in filters:
            params.append(filters[name])
            clauses.append(fragment.format(len(params)))
    if cursor is not None:
        params += [cursor.time, cursor.id]
        clauses.append(f"(time, event_id) < (${len(params) - 1}, ${len(params)})")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def search_sql(filters: Mapping[str, Any], cursor: Cursor | None, limit: int
               ) -> tuple[str, list[Any]]:
    where, params = build_where(filters, cursor)
    params.append(limit)
    sql = (f"SELECT {COLUMNS} FROM audit_events{where} "  # noqa: S608 - constant fragments
           f"ORDER BY time DESC, event_id DESC LIMIT ${len(params)}")
    return sql, params


SELECT_ONE = f"SELECT {COLUMNS} FROM audit_events WHERE event_id = $1"  # noqa: S608

STATS_SERIES = """
SELECT date_trunc($3, time, 'UTC') AS bucket, action, count(*) AS n
FROM audit_events WHERE time >= $1 AND time < $2
GROUP BY 1, 2 ORDER BY 1, 2
"""
STATS_TOP_RULES = """
SELECT rule, count(*) AS n
FROM audit_events, unnest(rules) AS rule
WHERE time >= $1 AND time < $2
GROUP BY rule ORDER BY n DESC, rule LIMIT $3
"""


def event_json(row: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(row)
    data["event_id"] = str(data["event_id"])
    data["time"] = data["time"].isoformat()
    for key in ("recipients", "rules", "flags", "notify"):
        data[key] = list(data[key] or [])
    return data
