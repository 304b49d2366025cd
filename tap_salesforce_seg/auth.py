"""Logging in to Salesforce: one attempt per `Authenticator.login()` call.

- SOAP login (`username` + `password` + `security_token`) through simple-salesforce's
  `SalesforceLogin`, pointed at the configured login URL with `scratch_url` (so a full base URL such as
  an emulator's `http://127.0.0.1:PORT` works) and sent through the tap's own HTTP session (timeouts).
  SOAP answers a host without a scheme; the instance uses the login URL's scheme.
- OAuth refresh token and client credentials: our own small POST to `/services/oauth2/token`; the
  instance URL comes from the answer. When Salesforce rotates the refresh token, the new one is used for
  the rest of the run and saved in `refresh_token_file` when the token came from there (token_file.py);
  otherwise a warning says so (without the token).

`login()` returns a `LoginResult` (token kept out of `repr`) or raises `AuthenticationError` (one line,
with the sandbox hint when `domain` is `login`; also for a SOAP login whose result says the password has
expired) or `TransientError` (the client retries those). A SOAP fault UNSUPPORTED_API_VERSION says which
API versions the host serves (versions.py).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any
from urllib.parse import urlsplit
from xml.parsers.expat import ExpatError

import requests
from simple_salesforce.exceptions import SalesforceAuthenticationFailed
from simple_salesforce.login import SalesforceLogin
from simple_salesforce.util import getUniqueElementValueFromXmlString

from tap_salesforce_seg import token_file
from tap_salesforce_seg.config import (
    AUTH_CLIENT_CREDENTIALS,
    AUTH_PASSWORD,
    AUTH_REFRESH_TOKEN,
    DEFAULT_API_VERSION,
    TapConfig,
)
from tap_salesforce_seg.errors import AuthenticationError, ConfigError, TapError, TransientError
from tap_salesforce_seg.http_errors import network_failure, page_summary, shorten
from tap_salesforce_seg.versions import unserved_version

TOKEN_PATH = "/services/oauth2/token"
SANDBOX_HINT = " If this is a sandbox org, set domain: test (or is_sandbox: true)."
# SOAP faults that mean "Salesforce is busy", not "wrong credentials".
_TRANSIENT_SOAP_CODES = frozenset({"SERVER_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "API_CURRENTLY_DISABLED"})
# SOAP login faults that come from the user's own org, and what to do about them: the sandbox hint
# (for a user that production does not know) would only mislead there.
_SOAP_FAULT_ADVICE = {
    "LOGIN_MUST_USE_SECURITY_TOKEN": (
        "Salesforce wants the user's security token with the password from this machine's address: set "
        "security_token (Salesforce emails a new one from the user's settings, Reset My Security Token), "
        "or add this machine's addresses to the org's trusted IP ranges"
    ),
    "API_DISABLED_FOR_ORG": (
        "the user may not use the API: its profile or a permission set needs the API Enabled permission, "
        "in an edition with API access (Enterprise, Unlimited, Performance, Developer)"
    ),
    "PASSWORD_LOCKOUT": (
        "the user is locked out after too many failed logins: an administrator can unlock it (Setup, "
        "Users), or wait for the lockout to end; check password and security_token before the next run"
    ),
    "LOGIN_DURING_RESTRICTED_TIME": "the user's profile allows logins only at certain hours (Login Hours)",
    "LOGIN_DURING_RESTRICTED_DOMAIN": "the user's profile allows logins only from certain addresses",
    "ORG_LOCKED": "Salesforce has locked the org: its administrator can say why",
}
# A login answer that never arrives whole (dropped connection, stalled read, body cut short): retried.
_UNREACHABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
_SOAP_PATH = "/services/Soap/u/"
# The login's serverUrl names the org's host. Legacy pod hosts answer there as `na15-api.salesforce.com`
# and serve the REST API as `na15.salesforce.com`; simple-salesforce strips "-api" from any host, which
# sent a My Domain named `globex-api` (`globex-api.my.salesforce.com`) to another org's host. So only a
# pod host loses it here.
_LEGACY_POD_API_HOST = re.compile(r"(?i)^([a-z]+\d+)-api(\.salesforce\.com(?::\d+)?)$")


@dataclasses.dataclass(frozen=True)
class LoginResult:
    access_token: str = dataclasses.field(repr=False)
    instance_url: str
    user_id: str | None = None  # from an OAuth answer's identity URL (.../id/<org id>/<user id>)

    @property
    def organization_id(self) -> str | None:
        """The org's 15-character id, which begins Salesforce's session ids and OAuth access tokens
        (``00D...!...``); None for a token of another shape."""
        match = _ORGANIZATION_PREFIX.match(self.access_token)
        return match.group(1) if match else None


_ORGANIZATION_PREFIX = re.compile(r"(00D[0-9A-Za-z]{12})!")
_IDENTITY_USER = re.compile(r"/id/00D[0-9A-Za-z]{12,15}/(005[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?)$")


def _user_id(identity: Any) -> str | None:
    """The user's id at the end of an OAuth answer's identity URL, or None."""
    match = _IDENTITY_USER.search(identity) if isinstance(identity, str) else None
    return match.group(1) if match else None


class Authenticator:
    """Performs the configured login method; the HTTP session is the client's (timeouts, adapters)."""

    def __init__(self, config: TapConfig, http: requests.Session, logger: logging.Logger) -> None:
        self._config = config
        self._http = http
        self._logger = logger
        self._refresh_token = config.refresh_token

    def login(self) -> LoginResult:
        mode = self._config.auth_mode
        if mode == AUTH_PASSWORD:
            return self._soap_login()
        if mode == AUTH_REFRESH_TOKEN:
            return self._oauth_login(
                {
                    "grant_type": "refresh_token",
                    "client_id": self._config.client_id,
                    "client_secret": self._config.client_secret,
                    "refresh_token": self._refresh_token,
                },
                "the refresh token",
            )
        if mode == AUTH_CLIENT_CREDENTIALS:
            return self._oauth_login(
                {
                    "grant_type": "client_credentials",
                    "client_id": self._config.client_id,
                    "client_secret": self._config.client_secret,
                },
                "the client credentials",
            )
        raise AuthenticationError(f"unknown login method {mode!r}")

    # --- SOAP -------------------------------------------------------------------------------------

    def _soap_login(self) -> LoginResult:
        config = self._config
        answers: list[requests.Response] = []  # the SOAP endpoint's answer, kept for when it is no SOAP

        def keep(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            if _SOAP_PATH in (response.request.url or ""):
                answers.append(response)

        self._http.hooks["response"].append(keep)
        try:
            session_id, instance = SalesforceLogin(
                username=config.username,
                password=config.password,
                security_token=config.security_token or "",
                sf_version=config.api_version,
                session=self._http,
                scratch_url=config.login_base_url,
                client_id="tap-salesforce-seg",
            )
        except SalesforceAuthenticationFailed as error:
            # simple-salesforce >= 1.12.9 keeps Salesforce's text in `auth_message` (`message` is a template).
            code, detail = error.code, shorten(str(getattr(error, "auth_message", None) or error.message))
            if answers and not _is_soap_answer(answers[-1]):
                raise self._not_a_soap_answer(answers[-1]) from None
            if code == "UNSUPPORTED_API_VERSION" or "UNSUPPORTED_API_VERSION" in detail:
                raise self._unsupported_version() from None
            if isinstance(code, int) or code in _TRANSIENT_SOAP_CODES:
                raise TransientError(
                    f"SOAP login at {config.login_base_url} failed: {code} {detail}",
                    status=code if isinstance(code, int) else None,
                ) from None
            if code == "INVALID_OPERATION_WITH_EXPIRED_PASSWORD":
                raise password_expired_error(config.username) from None
            advice = _SOAP_FAULT_ADVICE.get(str(code))
            if advice is not None:
                raise AuthenticationError(
                    f"Salesforce refused the login with user {config.username} at {config.login_base_url} "
                    f"({code}: {detail}): {advice}."
                ) from None
            raise self._refused(f"{code}: {detail}", f"user {config.username}") from None
        except ExpatError:  # an answer with status 200 that is no XML (a captive portal's page)
            if answers and not _is_soap_answer(answers[-1]):
                raise self._not_a_soap_answer(answers[-1]) from None
            raise AuthenticationError(
                f"the login at {config.login_base_url} answered with XML that could not be read"
            ) from None
        except _UNREACHABLE as error:
            raise network_failure(error, f"SOAP login at {config.login_base_url}") from None
        finally:
            self._http.hooks["response"].remove(keep)
        if answers and _password_expired(answers[-1]):
            raise password_expired_error(config.username) from None
        scheme = urlsplit(config.login_base_url).scheme
        host = _server_host(answers[-1]) if answers else None
        return LoginResult(access_token=session_id, instance_url=f"{scheme}://{host or instance}")

    def _unsupported_version(self) -> TapError:
        """The login's URL names an API version this Salesforce does not serve: which ones it does."""
        config = self._config
        return unserved_version(self._http, config.login_base_url, config.api_version) or ConfigError(
            f"api_version: Salesforce at {config.login_base_url} does not serve API version "
            f"{config.api_version} (UNSUPPORTED_API_VERSION); set an older api_version, or leave it out "
            f"(the default is {DEFAULT_API_VERSION})"
        )

    def _not_a_soap_answer(self, response: requests.Response) -> TapError:
        """A server that is not Salesforce's login answered (a mistyped domain, a proxy's or a captive
        portal's page): an error page is retried only when its status says the server is busy."""
        status, page = response.status_code, page_summary(response.text)
        if _transient_status(status):
            return TransientError(
                f"SOAP login at {self._config.login_base_url}: HTTP {status} {page}", status=status
            )
        return AuthenticationError(
            f"the login at {self._config.login_base_url} was answered with HTTP {status}, not by "
            f"Salesforce's SOAP login ({page}); check the domain setting"
        )

    # --- OAuth ------------------------------------------------------------------------------------

    def _oauth_login(self, form: dict[str, Any], what: str) -> LoginResult:
        url = self._config.login_base_url + TOKEN_PATH
        try:
            response = self._http.post(url, data=form, headers={"Accept": "application/json"})
        except _UNREACHABLE as error:
            raise network_failure(error, f"OAuth login at {url}") from None
        if _transient_status(response.status_code):
            raise TransientError(
                f"OAuth login at {url}: HTTP {response.status_code}", status=response.status_code
            )
        body = _json_or_none(response)
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error") if isinstance(body, dict) else None
            description = body.get("error_description") if isinstance(body, dict) else None
            detail = (
                f"{error}: {description}"
                if error
                else f"HTTP {response.status_code} {page_summary(response.text)}"
            )
            raise self._refused(shorten(detail), what)
        instance_url = str(body.get("instance_url") or "").rstrip("/")
        if not instance_url.startswith(("https://", "http://")):
            raise AuthenticationError(f"Salesforce's token answer has no usable instance_url ({url})")
        self._note_rotation(body.get("refresh_token"))
        return LoginResult(
            access_token=str(body["access_token"]),
            instance_url=instance_url,
            user_id=_user_id(body.get("id")),
        )

    def _note_rotation(self, new_token: Any) -> None:
        if not new_token or new_token == self._refresh_token:
            return
        self._refresh_token = str(new_token)
        path = self._config.refresh_token_file
        if path is None:
            self._logger.warning(
                "Salesforce returned a new refresh token (refresh token rotation is on for this connected "
                "app); the configured one may stop working. This run uses the new token; it is not shown "
                "here: keep the token in a file named by refresh_token_file (the tap then saves each new "
                "one there), or turn rotation off."
            )
            return
        try:
            token_file.save_token(path, self._refresh_token)
        except OSError as error:
            self._logger.warning(
                "Salesforce returned a new refresh token (refresh token rotation is on), which could not "
                "be saved in %s (%s): this run uses it, but the next run's login will be refused unless "
                "a fresh refresh token is put in that file.",
                path,
                error.strerror or type(error).__name__,
            )
            return
        self._logger.info("Salesforce rotated the refresh token; the new one is saved in %s", path)

    def _refused(self, detail: str, what: str) -> AuthenticationError:
        hint = SANDBOX_HINT if self._config.is_production_login else ""
        return AuthenticationError(
            f"Salesforce refused the login with {what} at {self._config.login_base_url} ({detail}).{hint}"
        )


def password_expired_error(username: str | None) -> AuthenticationError:
    """The user's password expired (Salesforce's default policy expires one every 90 days): its session
    is good for nothing but setting a new one, so the run stops at the login rather than at each call
    with INVALID_OPERATION_WITH_EXPIRED_PASSWORD."""
    user = f"user {username}" if username else "the user"
    return AuthenticationError(
        f"the password of {user} has expired: log in to Salesforce as that user and set a new one, then "
        "update `password` and `security_token` (a new password comes with a new token); an integration "
        "user's profile can have a password policy whose passwords never expire"
    )


def _password_expired(response: requests.Response) -> bool:
    """Whether a SOAP login's result says the password has expired."""
    return re.search(rb"<(?:\w+:)?passwordExpired>\s*true\s*<", response.content) is not None


def _server_host(answer: requests.Response) -> str | None:
    """The org's host from the login answer's serverUrl (see _LEGACY_POD_API_HOST), or None."""
    try:
        server_url = getUniqueElementValueFromXmlString(answer.content, "serverUrl")
    except (ExpatError, ValueError):
        return None
    host = urlsplit(server_url).netloc if server_url else ""
    return _LEGACY_POD_API_HOST.sub(r"\1\2", host) or None


def _is_soap_answer(response: requests.Response) -> bool:
    """Whether a login answer comes from a SOAP service (a session or a fault), not from a web page."""
    return b"Envelope" in response.content[:2000]  # soapenv:Envelope, whatever the prefix


def _transient_status(status: int) -> bool:
    """A server error or throttling worth retrying (501 Not Implemented is not: the server cannot)."""
    return (status >= 500 and status != 501) or status == 429


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
