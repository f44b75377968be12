"""Domain errors. The API turns them into ``{"error", "details"}`` with their status code."""

from __future__ import annotations

from typing import Any


class ConsoleError(Exception):
    status = 400

    def __init__(self, message: str, details: list[Any] | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []
        if status is not None:
            self.status = status


class ValidationFailed(ConsoleError):
    status = 422


class NotFound(ConsoleError):
    status = 404


class Conflict(ConsoleError):
    status = 409


class Forbidden(ConsoleError):
    status = 403
