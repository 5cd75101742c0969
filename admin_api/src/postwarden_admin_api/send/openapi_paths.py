"""The OpenAPI entries of the send API, merged by ``setup_send``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from postwarden_admin_api.context import Role
from postwarden_admin_api.middleware import HTTP_CODES
from postwarden_admin_api.openapi import (
    JSON_BODY_ERRORS,
    RETRY_AFTER,
    VALIDATION_FAILED,
    error_codes,
    header,
    json_content,
    operation,
    param,
    ref,
)

from .idempotency import MAX_KEY_LENGTH, RETENTION
from .queries import MAX_SUPPRESSION_DETAIL, MESSAGE_STATUSES, QUEUE_ID, RECIPIENT_STATUSES
from .refusals import Refusal
from .request_model import (
    CONTENT_ID,
    MAX_ATTACHMENTS,
    MAX_FILENAME,
    MAX_HEADER_VALUE,
    MAX_HEADERS,
    MAX_METADATA_BYTES,
    MAX_REFERENCES,
    MAX_SUBJECT,
    MAX_TAG,
    MAX_TAGS,
    TAG,
)

SUPPRESSION_REASONS = ("hard_bounce", "manual")  # why an address is suppressed

_ADDRESSES: dict[str, Any] = {
    "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
}
_TIME = {"type": "string", "format": "date-time"}
_EVENT: dict[str, Any] = {
    "type": "object", "required": ["time", "event"],
    "properties": {
        "time": _TIME, "event": {"type": "string"}, "detail": {"type": ["string", "null"]},
        "logged_at": {"type": ["string", "null"], "format": "date-time",
                      "description": "when Postfix logged the line the event comes from "
                                     "(null for the relay's own events)"},
    },
}
_RECIPIENT: dict[str, Any] = {
    "type": "object", "required": ["address", "kind", "status", "updated_at", "timeline"],
    "properties": {
        "address": {"type": "string"}, "kind": {"enum": ["to", "cc", "bcc"]},
        "status": {"enum": list(RECIPIENT_STATUSES)},
        "detail": {"type": ["string", "null"], "description": "the last reply about it"},
        "updated_at": _TIME,
        "timeline": {"type": "array", "items": _EVENT,
                     "description": "its events, oldest first: the message's `relayed` "
                                    "once Postfix took it for this recipient (detail: "
                                    "Postfix's queue id), then what Postfix's log "
                                    "says of it; a recipient Postfix refused has its "
                                    "`failed` instead"},
    },
}
# The optional fields of SendEmail: null stands for the field left out.
_OPTIONAL_SEND_FIELDS: dict[str, dict[str, Any]] = {
    "to": _ADDRESSES, "cc": _ADDRESSES, "bcc": _ADDRESSES, "reply_to": _ADDRESSES,
    "text": {"type": "string"},
    "html": {"type": "string"},
    "headers": {"type": "object", "maxProperties": MAX_HEADERS,
                # Names in any case: JSON Schema's patterns have no case-insensitive flag.
                "patternProperties": {"^[Rr][Ee][Ff][Ee][Rr][Ee][Nn][Cc][Ee][Ss]$": {
                    "type": "string", "minLength": 1, "maxLength": MAX_REFERENCES}},
                "additionalProperties": {
                    "type": "string", "minLength": 1, "maxLength": MAX_HEADER_VALUE}},
    "attachments": {"type": "array", "maxItems": MAX_ATTACHMENTS, "items": {
        "type": "object", "required": ["filename", "content_type", "content"],
        "additionalProperties": False,
        "properties": {
            "filename": {"type": "string", "minLength": 1, "maxLength": MAX_FILENAME,
                         "description": "a plain file name: no /, \\, \", control "
                                        "characters or encoded words, not dots alone"},
            "content_type": {"type": "string",
                             "description": "type/subtype; a text or XML type may add "
                                            "'; charset=NAME', the content's charset, "
                                            "text/calendar '; method=NAME' (RFC 5546)"},
            "content": {"type": "string", "contentEncoding": "base64"},
            "content_id": {"type": "string", "pattern": f"^{CONTENT_ID.pattern}$",
                           "description": "an inline file, shown by the html body "
                                          "(<img src=\"cid:logo\"> for \"logo\"), which "
                                          "is then required; unique in the request, in any "
                                          "case; sent as Content-ID: <logo>"},
        },
    }},
    "tags": {"type": "array", "maxItems": MAX_TAGS, "uniqueItems": True, "items": {
        "type": "string", "pattern": f"^{TAG.pattern}$", "maxLength": MAX_TAG}},
    # Flat: a value is never an object or a list. No string in it can be longer than
    # the whole may be; the whole's size JSON Schema cannot say.
    "metadata": {
        "type": "object",
        "description": f"a flat object of at most {MAX_METADATA_BYTES} bytes written as "
                       "compact JSON (UTF-8): string, number, boolean or null values",
        "propertyNames": {"maxLength": MAX_METADATA_BYTES},
        "additionalProperties": {"type": ["string", "number", "boolean", "null"],
                                 "maxLength": MAX_METADATA_BYTES},
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "SendEmail": {
        "type": "object",
        "required": ["from", "subject"],
        "additionalProperties": False,
        "properties": {
            "from": {"type": "string", "description": "address or Name <address>"},
            "subject": {"type": "string", "minLength": 1, "maxLength": MAX_SUBJECT},
            **{name: {"anyOf": [schema, {"type": "null"}]}
               for name, schema in _OPTIONAL_SEND_FIELDS.items()},
        },
    },
    "SendAccepted": {
        "type": "object", "required": ["id", "message_id", "status"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "message_id": {"type": "string"},
            "status": {"const": "queued"},
        },
    },
    "OutboundMessage": {
        "type": "object",
        "required": ["id", "message_id", "from", "status", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid"}, "message_id": {"type": "string"},
            "key_id": {"type": "string"}, "from": {"type": "string"},
            "subject": {"type": "string"}, "status": {"enum": list(MESSAGE_STATUSES)},
            "recipient_count": {"type": "integer"},
            "size": {"type": "integer", "description": "bytes of the built message"},
            "tags": {"type": "array", "items": {"type": "string"}}, "metadata": {"type": "object"},
            "queue_id": {"type": ["string", "null"]}, "attempts": {"type": "integer"},
            "last_error": {"type": ["string", "null"]}, "created_at": _TIME, "updated_at": _TIME,
            "recipients": {"type": "array", "description": "GET /api/v1/messages/{id} only",
                           "items": _RECIPIENT},
            "events": {"type": "array", "description": "the message's own events",
                       "items": _EVENT},
        },
    },
    "Suppression": {
        "type": "object", "required": ["address", "reason", "created_at"],
        "properties": {
            "address": {"type": "string"}, "reason": {"enum": list(SUPPRESSION_REASONS)},
            "detail": {"type": ["string", "null"]}, "created_at": _TIME,
            "created_by": {"type": ["string", "null"]},
        },
    },
}
# The body of POST /api/v1/suppressions: its properties are the fields the route takes
# (routes.SUPPRESSION_FIELDS); any other is refused.
SUPPRESSION_REQUEST: dict[str, Any] = {
    "type": "object", "required": ["address"], "additionalProperties": False,
    "properties": {"address": {"type": "string"},
                   # null: as if left out
                   "detail": {"type": ["string", "null"], "maxLength": MAX_SUPPRESSION_DETAIL}},
}

# The error codes each handler answers with itself, by status (see operation's errors).
_REFUSALS = {status: [r.code for r in Refusal if r.status == status]
             for status in {r.status for r in Refusal}}
_INVALID = {422: [VALIDATION_FAILED]}
_NOT_FOUND = {404: [HTTP_CODES[404]]}
# idempotency.valid_key: visible ASCII (a test checks the two agree).
_IDEMPOTENCY_KEY = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
                    "pattern": "^[!-~]+$"}
_REUSED = Refusal.IDEMPOTENCY_KEY_REUSED
_IDEMPOTENCY = (f"a retry with the same key and body within {RETENTION / dt.timedelta(hours=1):g}"
                " hours gets the first answer (Idempotent-Replayed) and sends nothing; "
                f"another body with it is {_REUSED.status} {_REUSED.code}")

_SENDERS = [Role.SENDER]
_READERS = [Role.SENDER, Role.AUDITOR]
_ADDRESS_QUERY = param("address", "query", {"type": "string"}, required=True)
_ADDRESS_FILTER = ("an address (local@domain or Name <local@domain>), compared as parsed: "
                   "case-insensitively, an IDN domain in either form; 422 if invalid")

OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/send-email": {
        "post": operation(
            "queue a message for sending through Postfix", _SENDERS,
            body=json_content(ref("SendEmail")),
            responses={202: ref("SendAccepted")},
            errors=error_codes(JSON_BODY_ERRORS, _REFUSALS),
            parameters=[param("Idempotency-Key", "header", _IDEMPOTENCY_KEY,
                              description=_IDEMPOTENCY)],
            headers={
                202: {
                    "Location": header("the message's URL (GET it for its status)",
                                       {"type": "string"}),
                    "Idempotent-Replayed": header(
                        "the first answer to this Idempotency-Key, sent again: nothing was "
                        "sent twice", {"const": "true"}, required=False),
                },
                409: {"Retry-After": RETRY_AFTER},
            },
            descriptions={409: "idempotency_request_in_progress: retry after Retry-After"},
        ),
    },
    "/api/v1/messages/{id}": {
        "get": operation(
            "a sent message with its per-recipient timeline", _READERS,
            parameters=[param("id", "path", {"type": "string", "format": "uuid"})],
            responses={200: ref("OutboundMessage")}, errors=_NOT_FOUND,
        ),
    },
    "/api/v1/messages": {
        "get": operation(
            "search sent messages, newest first", _READERS,
            parameters=[
                param("status", "query", {"enum": list(MESSAGE_STATUSES)}),
                param("from", "query", {"type": "string"}, description=_ADDRESS_FILTER),
                param("to", "query", {"type": "string"}, description=_ADDRESS_FILTER),
                param("tag", "query", {"type": "string", "pattern": f"^{TAG.pattern}$"},
                      description="a tag the message has, case told apart"),
                param("message_id", "query", {"type": "string", "minLength": 1},
                      description="the Message-ID header, angle brackets optional"),
                param("queue_id", "query", {"type": "string", "pattern": f"^{QUEUE_ID.pattern}$"},
                      description="Postfix's queue id, as its log writes it"),
                param("since", "query", _TIME),
                param("until", "query", _TIME),
                param("cursor", "query", {"type": "string"},
                      description="next_cursor of the previous page, as given (URL-safe), "
                                  "with the same filters (else 422 cursor_mismatch)"),
                param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
            ],
            responses={200: {"type": "object", "properties": {
                "messages": {"type": "array", "items": ref("OutboundMessage")},
                "next_cursor": {"type": ["string", "null"]},
            }}}, errors={422: [VALIDATION_FAILED, "cursor_mismatch"], 503: ["query_timeout"]},
        ),
    },
    "/api/v1/suppressions": {
        "get": operation(
            "list suppressed addresses", [Role.OPERATOR, Role.AUDITOR],
            parameters=[
                param("after", "query", {"type": "string"}),
                param("reason", "query", {"enum": list(SUPPRESSION_REASONS)}),
                param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
            ],
            responses={200: {"type": "object", "properties": {
                "suppressions": {"type": "array", "items": ref("Suppression")},
                "next_after": {"type": ["string", "null"]},
            }}}, errors=_INVALID,
        ),
        "post": operation(
            "suppress an address", [Role.OPERATOR],
            body=json_content(SUPPRESSION_REQUEST),
            responses={200: ref("Suppression"), 201: ref("Suppression")},
            descriptions={200: "the address was suppressed already: its entry as it "
                          "stands (a repeat's detail is not stored)",
                          201: "the entry added"},
            errors=error_codes(JSON_BODY_ERRORS, _INVALID),
        ),
        "delete": operation(
            "remove an address from the suppression list", [Role.OPERATOR],
            parameters=[_ADDRESS_QUERY],
            responses={200: {"type": "object", "properties": {
                "address": {"type": "string"}, "deleted": {"const": True},
            }}}, errors=error_codes(_INVALID, _NOT_FOUND),
        ),
    },
}
