"""The tap's errors: each one renders as a single line a user can act on.

- `TapError`: base class; `exit_code` is the process exit status the CLI uses for it.
- `ConfigError("<setting>: <what>")`: a bad or missing setting, raised before any network call.
- `CatalogError`: a --catalog that names streams the org does not have (lists the valid names).
- `StateError`: a --state whose `bookmarks` are not an object of per-stream objects.
- `AuthenticationError`: login refused (one line, with the sandbox hint when `domain` is `login`).
- `SalesforceApiError(status, error_code, message)`: an error answer of the REST API
  (INVALID_FIELD, MALFORMED_QUERY, QUERY_TIMEOUT, ...), after retries where retries apply.
- `QuotaExceeded`: the org's daily API allowance is used up to `quota_percent` (or Salesforce said
  REQUEST_LIMIT_EXCEEDED); the message says when to retry. Exit status 2.
- `TransientError`: a failure worth retrying (5xx, 406, 429, dropped connection, timeout); the client
  retries it with backoff and raises `ServiceUnavailable` once the attempts are spent.

No message ever carries a secret: the classes that format messages only receive names, codes and
Salesforce's own error text.
"""

from __future__ import annotations


class TapError(Exception):
    """Base of the tap's own errors."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        # One line: Salesforce messages (MALFORMED_QUERY) contain newlines and carets.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self)


class OutputClosed(TapError):
    """stdout closed under the tap (the target stopped reading), or it cannot be written (a full disk
    under a file it was redirected to): nothing more can be delivered."""

    def __init__(self, failure: OSError | None = None) -> None:
        if failure is None or isinstance(failure, BrokenPipeError):
            super().__init__(
                "stdout was closed while messages were being written (did the target stop? see its log); "
                "the next run resumes from the last state the target wrote"
            )
        else:
            super().__init__(
                f"stdout could not be written: {failure.strerror or failure}; make room where it goes and "
                "run again (a sync resumes from the last STATE it wrote)"
            )


class ConfigError(TapError):
    """A bad or missing setting. The message starts with the setting's name."""


class CatalogError(TapError):
    """The input catalog does not match what the org offers."""


class StateError(TapError):
    """The input state (``--state``) is not the shape Singer state has."""


class AuthenticationError(TapError):
    """Salesforce refused the login."""


class SalesforceApiError(TapError):
    """An error answer of the Salesforce API, e.g. 400 INVALID_FIELD."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.api_message = " ".join(message.split())
        self.method = method
        self.path = path
        where = f" ({method} {path})" if method and path else ""
        super().__init__(f"Salesforce answered {status} {error_code}{where}: {self.api_message}")


class QuotaExceeded(TapError):
    """The org's API allowance is (nearly) used up; stop cleanly and retry later."""

    exit_code = 2


class TransientError(TapError):
    """A failure worth retrying: Salesforce busy or unreachable, a connection dropped midway."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ServiceUnavailable(TapError):
    """Salesforce kept failing transiently until the client ran out of attempts."""
