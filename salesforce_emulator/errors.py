"""Salesforce-shaped API errors.

Every error the emulator answers with is an `ApiError`: the HTTP layer renders it exactly as Salesforce
does, a JSON array `[{"message": ..., "errorCode": ..., "fields": [...]}]` with the HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ApiError(Exception):
    """An error Salesforce reports to API clients (REST and Bulk 2.0)."""

    http_status: int
    error_code: str
    message: str
    fields: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(f"{self.error_code}: {self.message}")

    def body(self) -> list[dict[str, object]]:
        entry: dict[str, object] = {"message": self.message, "errorCode": self.error_code}
        if self.fields:
            entry["fields"] = list(self.fields)
        return [entry]


def not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", "The requested resource does not exist")
