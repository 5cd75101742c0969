"""Routes of the send API and their OpenAPI entries."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from postwarden_admin_api import admin_audit
from postwarden_admin_api.addresses import AddressError, parse_mailbox
from postwarden_admin_api.audit_queries import range_problem, reading
from postwarden_admin_api.bodies import (
    HIDDEN_REFUSED,
    PLUS_AS_SPACE,
    QueryProblems,
    blank_as_none,
    has_hidden,
    json_ok,
    path_uuid,
    query_int,
    query_time,
    read_json_object,
    unknown_fields,
)
from postwarden_admin_api.context import POOL, Role, allow, principal, reads_query
from postwarden_admin_api.cursors import check_scope, query_cursor
from postwarden_admin_api.errors import ApiError, ValidationFailed, connection
from postwarden_admin_api.httpserver import ended_if_client_leaves

from . import queries
from .openapi_paths import SUPPRESSION_REASONS, SUPPRESSION_REQUEST
from .request_model import TAG, TAG_DETAIL
from .sending import send_email

routes = web.RouteTableDef()
# Raised afresh each time: an exception object raised again keeps every earlier
# raise's frames (their requests) in its traceback.
NO_MESSAGE = "no such message"


def _own_line(request: web.Request) -> str | None:
    """The rotation line whose messages a sender key sees (its own, and those of the
    keys it replaced or that replaced it: Principal.owner); admins and auditors see all."""
    who = principal(request)
    return who.owner if who.role is Role.SENDER else None


@routes.post("/api/v1/send-email")
@allow(Role.SENDER)
async def post_send_email(request: web.Request) -> web.Response:
    return await send_email(request, principal(request))


@routes.get("/api/v1/messages/{id}")
@allow(Role.SENDER, Role.AUDITOR)
async def get_message(request: web.Request) -> web.Response:
    message_id = path_uuid(request, "id", NO_MESSAGE)
    async with connection(request.app[POOL]) as conn:
        found = await queries.get_message(conn, message_id, _own_line(request))
    if found is None:
        raise ApiError(404, "not_found", NO_MESSAGE)
    return json_ok(found)


def _address(raw: object, field: str, *, in_url: bool = False) -> str:
    """The address's key, as stored for suppressions and compared in searches.
    ``in_url``: a query parameter's, whose "+" a client that did not encode it sent
    as a space (``a+tag@x.org`` arrives as ``a tag@x.org``): refused with that hint."""
    try:
        if not isinstance(raw, str):
            raise AddressError("expected an address")
        return parse_mailbox(raw).key
    except AddressError as exc:
        message = str(exc)
        if in_url and isinstance(raw, str) and _plus_as_space(raw):
            message = f"{message} {PLUS_AS_SPACE}"
        raise ValidationFailed([{"field": field, "message": message}]) from None


def _plus_as_space(raw: str) -> bool:
    """Whether ``raw`` holds a space and is an address once its spaces are "+" again."""
    if " " not in raw:
        return False
    try:
        parse_mailbox(raw.replace(" ", "+"))
    except AddressError:
        return False
    return True


def _address_filter(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    return None if raw is None else _address(raw, name, in_url=True)


def _status_filter(request: web.Request) -> str | None:
    status = request.query.get("status")
    if status is not None and status not in queries.MESSAGE_STATUSES:
        expected = ", ".join(queries.MESSAGE_STATUSES)
        raise ValidationFailed([{"field": "status", "message": f"expected one of {expected}"}])
    return status


_ANY = re.compile(r".+", re.DOTALL)
# What a filter matched exactly must be, and the 422's message when it is not: a value
# no message can have would answer 200 and nothing, as if none matched.
_EXACT_FILTERS = {
    "tag": (TAG, f"not a tag: {TAG_DETAIL}"),
    "message_id": (_ANY, "expected a value, not empty"),
    "queue_id": (queries.QUEUE_ID, "not a Postfix queue id: letters and digits"),
}


def _exact_filter(request: web.Request, name: str) -> str | None:
    """A filter matched exactly (``tag``, ``message_id``, ``queue_id``), refused when no
    message can have it (an empty one too, as ``to=`` is)."""
    value = request.query.get(name)
    pattern, message = _EXACT_FILTERS[name]
    if value is not None and not pattern.fullmatch(value):
        raise ValidationFailed([{"field": name, "message": message}])
    return value


SEARCH_PARAMETERS = ("since", "until", "status", "from", "to", "tag", "message_id", "queue_id",
                     "cursor", "limit")


def _message_filter(request: web.Request) -> queries.MessageFilter:
    """The search's filters; one 422 lists every bad parameter, not only the first, and
    every unknown one (a misspelt filter, ``sender=``, would widen the search to all)."""
    query = QueryProblems(request)
    since, until = query.read(query_time, "since"), query.read(query_time, "until")
    status = query.read(_status_filter)
    sender, recipient = query.read(_address_filter, "from"), query.read(_address_filter, "to")
    tag, message_id, queue_id = (query.read(_exact_filter, name)
                                 for name in ("tag", "message_id", "queue_id"))
    after = query.read(query_cursor)
    limit = query.read(query_int, "limit", 50, 1, 500)
    empty = range_problem(since, until)
    if empty is not None:
        query.found.append(empty)
    query.raise_any()
    assert limit is not None  # noqa: S101 - a bad one was raised above
    search = queries.MessageFilter(
        owner=_own_line(request), status=status, sender=sender, recipient=recipient,
        tag=tag, message_id=_bracketed(message_id), queue_id=queue_id, since=since,
        until=until, after=after, limit=limit,
    )
    check_scope(after, queries.search_scope(search))
    return search


def _bracketed(message_id: str | None) -> str | None:
    """A Message-ID as the header writes it: one copied without its angle brackets (as
    many mail clients show it) finds it too."""
    if message_id is None or message_id.startswith("<"):
        return message_id
    return f"<{message_id}>"


@routes.get(queries.SEARCH_ROUTE)
@allow(Role.SENDER, Role.AUDITOR)
@reads_query(*SEARCH_PARAMETERS, listed=True)
async def search_messages(request: web.Request) -> web.Response:
    search = _message_filter(request)
    # Cut as the audit reads are: free filters (tag, to) over every message sent may
    # scan for long, and the pool it holds a connection of serves the sends too.
    async with ended_if_client_leaves(request), reading(request.app[POOL]) as conn:
        messages, cursor = await queries.search_messages(conn, search)
    return json_ok({"messages": messages, "next_cursor": cursor})


def _listing_position(raw: str | None) -> str | None:
    """``after`` as the listing writes addresses (lower case, A-labels), so that one
    written otherwise starts the page where that address is. What is no address is
    kept as given: a position in the listing's order, refused nowhere before."""
    if raw is None:
        return None
    try:
        return parse_mailbox(raw).key
    except AddressError:
        return raw


SUPPRESSION_PARAMETERS = ("reason", "limit", "after")
SUPPRESSION_FIELDS = frozenset(SUPPRESSION_REQUEST["properties"])  # as documented


def _reason_filter(request: web.Request) -> str | None:
    reason = request.query.get("reason")
    if reason is not None and reason not in SUPPRESSION_REASONS:
        raise ValidationFailed([{"field": "reason", "message":
                                 f"expected one of {', '.join(SUPPRESSION_REASONS)}"}])
    return reason


@routes.get("/api/v1/suppressions")
@allow(Role.OPERATOR, Role.AUDITOR)
@reads_query(*SUPPRESSION_PARAMETERS, listed=True)
async def list_suppressions(request: web.Request) -> web.Response:
    # As the message search: a misspelt filter (reasn=) would list every suppression.
    query = QueryProblems(request)
    reason = query.read(_reason_filter)
    limit = query.read(query_int, "limit", 100, 1, 1000)
    query.raise_any()
    assert limit is not None  # noqa: S101 - a bad one was raised above
    async with connection(request.app[POOL]) as conn:
        found, after = await queries.list_suppressions(
            conn, _listing_position(request.query.get("after")), reason, limit
        )
    return json_ok({"suppressions": found, "next_after": after})


def _new_suppression(body: dict[str, Any]) -> tuple[str, str | None]:
    """The address and detail to suppress; one 422 lists every problem, an unknown
    field among them (a misspelt ``detail`` would be dropped unseen)."""
    problems = unknown_fields(body, SUPPRESSION_FIELDS)
    address = ""
    try:
        address = _address(body.get("address"), "address")
    except ValidationFailed as failed:
        problems += failed.details
    detail = body.get("detail")
    most = queries.MAX_SUPPRESSION_DETAIL
    if detail is not None and not isinstance(detail, str):
        problems.append({"field": "detail", "message": "expected a string"})
    elif detail is not None and len(detail) > most:
        problems.append({"field": "detail", "message": f"at most {most} characters"})
    elif detail is not None and has_hidden(detail):  # listed, and in the admin audit log
        problems.append({"field": "detail", "message": HIDDEN_REFUSED})
    if problems:
        raise ValidationFailed(problems)
    return address, blank_as_none(detail)


@routes.post("/api/v1/suppressions")
@allow(Role.OPERATOR)
async def add_suppression(request: web.Request) -> web.Response:
    address, detail = _new_suppression(await read_json_object(request))
    async with connection(request.app[POOL]) as conn, conn.transaction():
        entry, created = await queries.add_suppression(
            conn, address, detail, principal(request).key_id
        )
        if created:  # an operator stops mail to an address: who, as for the other changes
            await admin_audit.record(conn, request, "suppression.added", address,
                                     {"detail": detail} if detail else None)
    return json_ok(entry, status=201 if created else 200)


@routes.delete("/api/v1/suppressions")
@allow(Role.OPERATOR)
@reads_query("address")
async def delete_suppression(request: web.Request) -> web.Response:
    address = _address(request.query.get("address"), "address", in_url=True)
    async with connection(request.app[POOL]) as conn, conn.transaction():
        deleted = await queries.delete_suppression(conn, address)
        if deleted:
            await admin_audit.record(conn, request, "suppression.lifted", address)
    if not deleted:
        raise ApiError(404, "not_found", "the address is not suppressed")
    return json_ok({"address": address, "deleted": True})
