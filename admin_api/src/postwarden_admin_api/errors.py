"""Exceptions of postwarden_admin_api; the error middleware maps them to JSON.

    ApiError                 an HTTP error with a stable code (status, code, message, details)
    └── ValidationFailed     422 validation_failed, every bad field listed in details

Handlers raise these; nothing else reaches a client. Unexpected exceptions
become 500 ``internal_error`` with no exception text.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ValidationFailed(ApiError):
    def __init__(self, details: list[dict[str, Any]], message: str = "request is invalid") -> None:
        super().__init__(422, "validation_failed", message, details)
