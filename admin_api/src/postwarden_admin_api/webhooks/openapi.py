"""OpenAPI entries of the webhook routes, merged by ``setup_webhooks``."""

from __future__ import annotations

from typing import Any

from postwarden_admin_api.context import Role
from postwarden_admin_api.openapi import (
    JSON_BODY_ERRORS,
    VALIDATION_FAILED,
    error_codes,
    json_content,
    operation,
    param,
    ref,
)

from .changes import MAX_KEY_ID, MAX_SEND_KEYS
from .events import SUBSCRIBABLE
from .payloads import Kind

_ROLES = [Role.OPERATOR]
_TIME = {"type": ["string", "null"], "format": "date-time"}
_IS_SET = {"type": "object", "required": ["is_set"], "properties": {"is_set": {"type": "boolean"}}}
_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
    "url": {"type": "string", "minLength": 1, "maxLength": 2048,
            "description": "https only; checked by the SSRF guard; write-only (a secret: "
                           "stored encrypted, shown as scheme and host)"},
    "kind": {"type": "string", "enum": [k.value for k in Kind]},
    "events": {"type": "array", "items": {"type": "string", "enum": sorted(SUBSCRIBABLE)}},
    "enabled": {"type": "boolean"},
    "secret": {"type": ["string", "null"], "description": "whsec_<base64>, write-only"},
    "headers": {"type": ["object", "null"], "additionalProperties": {"type": "string"},
                "description": "api_call only; write-only"},
    "body_template": {"type": ["object", "array", "null"],
                      "description": "api_call only; strings may hold {{ data.field }}; "
                                     "write-only (it may hold a credential)"},
    "send_keys": {"type": ["array", "null"], "minItems": 1, "maxItems": MAX_SEND_KEYS,
                  "items": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_ID},
                  "description": "null: send.* events of every API key; else only of messages "
                                 "sent by these stored keys' rotation lines (a key's "
                                 "successors and predecessors count too)"},
}
SCHEMAS: dict[str, Any] = {
    "Webhook": {
        "type": "object",
        "required": ["id", "name", "url", "url_is_set", "kind", "events", "enabled", "secret",
                     "headers", "body_template", "send_keys"],
        "properties": {
            **{k: v for k, v in _FIELDS.items()
               if k not in ("url", "secret", "headers", "body_template")},
            "id": {"type": "integer"}, "secret": _IS_SET, "headers": _IS_SET,
            "body_template": _IS_SET,
            "url": {"type": "string", "examples": ["https://hooks.slack.com/\u2026"],
                    "description": "masked: scheme and host only, never the full URL"},
            "url_is_set": {"type": "boolean"},
            "warnings": {"type": "array", "items": ref("PolicyWarning"),
                         "description": "in the answer of a change only: a new name leaves "
                                        "the active rules that notified the old one a "
                                        "notify_endpoint_missing each, and enabled false "
                                        "those that notify it a notify_endpoint_disabled "
                                        "each"},
            "disabled_reason": {
                "type": ["string", "null"],
                "description": "why the service disabled the endpoint (its receiver answered "
                               "410 Gone); null while enabled, or disabled by an operator"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "NewWebhook": {"type": "object", "required": ["name", "url"],
                   "additionalProperties": False, "properties": _FIELDS},
    "WebhookChange": {"type": "object", "additionalProperties": False, "properties": _FIELDS},
    "WebhookDelivery": {
        "type": "object",
        "required": ["id", "event_id", "type", "status", "attempts"],
        "properties": {
            "id": {"type": "integer"}, "event_id": {"type": "string", "format": "uuid"},
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "delivered", "dead"]},
            "attempts": {"type": "integer"},
            "next_attempt_at": {**_TIME, "description": "null unless pending"},
            "last_attempt_at": _TIME, "last_status_code": {"type": ["integer", "null"]},
            "last_error": {"type": ["string", "null"]}, "delivered_at": _TIME,
            "replay_of": {"type": ["integer", "null"]}, "created_at": _TIME,
        },
    },
}
_ID = param("id", "path", {"type": "integer"})
_DELIVERY_ID = param("delivery_id", "path", {"type": "integer"})
_LIST = {"type": "object", "required": ["webhooks"],
         "properties": {"webhooks": {"type": "array", "items": ref("Webhook")}}}
_DELETED = {"type": "object", "required": ["warnings"], "properties": {"warnings": {
    "type": "array", "items": ref("PolicyWarning"),
    "description": "a notify_endpoint_missing for each active rule that notified it"}}}
_DELIVERIES = {"type": "object", "required": ["deliveries"],
               "properties": {"deliveries": {"type": "array", "items": ref("WebhookDelivery")}}}
# The codes each handler raises, declared per status (a test asks the service for each).
_NOT_FOUND = {404: ["not_found"]}
_INVALID = {422: [VALIDATION_FAILED]}
_CHANGE = error_codes(JSON_BODY_ERRORS, {409: ["name_taken"],
                                         422: [VALIDATION_FAILED, "url_not_allowed"]})
OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/webhooks": {
        "get": operation("list webhook endpoints", _ROLES, responses={200: _LIST}, errors={}),
        "post": operation("create a webhook endpoint (422 url_not_allowed: SSRF guard)", _ROLES,
                          body=json_content(ref("NewWebhook")), responses={201: ref("Webhook")},
                          errors=_CHANGE),
    },
    "/api/v1/webhooks/{id}": {
        "get": operation("one webhook endpoint", _ROLES, parameters=[_ID],
                         responses={200: ref("Webhook")}, errors=_NOT_FOUND),
        "patch": operation("change a webhook endpoint (a new url or kind, or any body_template "
                           "given, needs write-only values given again: 422 "
                           "validation_failed); a change of what or where it sends answers "
                           "once the requests under way with the old settings have ended",
                           _ROLES,
                           parameters=[_ID],
                           body=json_content(ref("WebhookChange")),
                           responses={200: ref("Webhook")},
                           errors=error_codes(_CHANGE, _NOT_FOUND)),
        "delete": operation("delete a webhook endpoint and its deliveries; answers once "
                            "the requests under way to it have ended", _ROLES,
                            parameters=[_ID], responses={200: _DELETED}, errors=_NOT_FOUND),
    },
    "/api/v1/webhooks/{id}/deliveries": {
        "get": operation(
            "deliveries to this endpoint, newest first", _ROLES, responses={200: _DELIVERIES},
            parameters=[
                _ID,
                param("status", "query", {"type": "string",
                                          "enum": ["pending", "delivered", "dead"]}),
                param("before_id", "query", {"type": "integer", "minimum": 1}),
                param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
            ],
            errors=error_codes(_INVALID, _NOT_FOUND),
        ),
    },
    "/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay": {
        "post": operation("deliver a delivered or dead delivery again", _ROLES,
                          parameters=[_ID, _DELIVERY_ID],
                          responses={202: ref("WebhookDelivery")},
                          errors={**_NOT_FOUND,
                                  409: ["delivery_pending", "webhook_url_changed"]}),
    },
}
