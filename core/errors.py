"""One application error type, mapped to HTTP by one exception handler."""

from __future__ import annotations


class ApplicationError(Exception):
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, extra: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra or {}


class InvalidInput(ApplicationError):
    status_code = 400


class NotFound(ApplicationError):
    status_code = 404


class Conflict(ApplicationError):
    status_code = 409


class SupervisorUnavailable(ApplicationError):
    status_code = 503


class Forbidden(ApplicationError):
    status_code = 403
