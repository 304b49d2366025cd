"""Authentication: SOAP login, the OAuth 2.0 token endpoint, and the sessions they issue.

Default credentials (fixed, so scripts can rely on them; each can be changed, see cli.py):
username `admin@example.com`, password `password`, security token `TOKEN`, client id
`emulator-client-id`, client secret `emulator-client-secret`, refresh token `emulator-refresh-token`.

- SOAP `POST /services/Soap/u/{version}`: the password element must be the password with the security
  token appended (when the token is configured empty, the bare password). Success is Salesforce's partner
  `loginResponse` XML (unprefixed `sessionId`, `serverUrl` pointing at the emulator); anything else is the
  HTTP 500 INVALID_LOGIN SOAP fault.
- OAuth `POST /services/oauth2/token` (form fields, or the query string): grants `refresh_token`,
  `password` and `client_credentials`; the client may authenticate with form fields or an HTTP Basic
  header. Success is Salesforce's JSON (`access_token`, `instance_url` = the emulator's base URL, `id`,
  `token_type`, `issued_at`, `signature` = base64 HMAC-SHA256 of id + issued_at keyed by the client
  secret, `scope`); with `rotate_refresh_tokens` a refresh answers with a new `refresh_token` and the old
  one stops working. Errors are HTTP 400 `{"error": ..., "error_description": ...}` as Salesforce sends
  them (`invalid_grant`, `invalid_client`, `invalid_client_id`, `unsupported_grant_type`).
- `POST /services/oauth2/revoke` (`token=`): revokes an access or refresh token.
- Sessions (access tokens, the SOAP sessionId too) are accepted as `Authorization: Bearer <t>` (or
  `OAuth <t>`) and expire `session_lifetime` seconds after issue (real time, not the org's clock, so
  moving the org's clock never logs clients out); `expire_all()` ends every session at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import escape, unescape

ORGANIZATION_ID = "00DEm0000000001"  # completed to 18 characters below
USER_ID = "005Em0000000001"
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def case_safe_id(id15: str) -> str:
    """Salesforce's 18-character form: three suffix characters encode the case of the 15."""
    suffix = ""
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += _SUFFIX_ALPHABET[bits]
    return id15 + suffix


def salesforce_id(prefix: str, number: int) -> str:
    """An 18-character Id: key prefix, 'Em' (emulator pod), a base-62 serial, case-safety suffix."""
    digits = ""
    for _ in range(10):
        number, remainder = divmod(number, 62)
        digits = _BASE62[remainder] + digits
    return case_safe_id(f"{prefix}Em{digits}")


ORGANIZATION_ID_18 = case_safe_id(ORGANIZATION_ID)
USER_ID_18 = case_safe_id(USER_ID)


@dataclass(frozen=True)
class Credentials:
    username: str = "admin@example.com"
    password: str = "password"
    security_token: str = "TOKEN"
    client_id: str = "emulator-client-id"
    client_secret: str = "emulator-client-secret"
    refresh_token: str = "emulator-refresh-token"

    def as_pairs(self) -> dict[str, str]:
        return {
            "username": self.username,
            "password": self.password,
            "security_token": self.security_token,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
        }


@dataclass
class Session:
    token: str
    issued_at: float  # time.monotonic()
    expires_at: float
    via: str  # "soap", "refresh_token", "password", "client_credentials"


class OAuthError(Exception):
    """An OAuth token endpoint error: HTTP 400 with Salesforce's error JSON."""

    def __init__(self, error: str, description: str, http_status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.http_status = http_status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class AuthService:
    """Issues and checks sessions. Thread-safe."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        session_lifetime: float = 7200.0,
        rotate_refresh_tokens: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        organization_id: str = ORGANIZATION_ID,
    ) -> None:
        self.credentials = credentials or Credentials()
        # Salesforce's session ids (and OAuth access tokens) begin with the org's 15-character id.
        self.organization_id = organization_id[:15]
        self.organization_id_18 = case_safe_id(self.organization_id)
        self.session_lifetime = float(session_lifetime)
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._refresh_tokens: set[str] = {self.credentials.refresh_token}
        self.logins = 0
        # The user's password has expired (Salesforce's default policy: every 90 days): a SOAP login
        # still succeeds, saying `passwordExpired` true. (Salesforce's session is then good only for
        # setting a new one; the emulator's works as usual.)
        self.password_expired = False
        # A LoginFault code (LOGIN_MUST_USE_SECURITY_TOKEN, API_DISABLED_FOR_ORG, ...) and its message
        # that a SOAP login with the right credentials is answered with (the org's own refusal).
        self.login_fault: tuple[str, str] | None = None

    # ---- sessions ----
    def authenticate(self, authorization: str | None) -> Session | None:
        """The live session named by an `Authorization: Bearer|OAuth <token>` header, else None."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token:
            return None
        with self._lock:
            session = self._sessions.get(token.strip())
            if session is None:
                return None
            if self._monotonic() >= session.expires_at:
                del self._sessions[session.token]
                return None
            return session

    def expire_all(self) -> int:
        """End every session now (clients must log in again). Returns how many ended."""
        with self._lock:
            count = len(self._sessions)
            self._sessions.clear()
            return count

    def revoke(self, token: str) -> bool:
        with self._lock:
            if self._sessions.pop(token, None) is not None:
                return True
            if token in self._refresh_tokens:
                self._refresh_tokens.discard(token)
                return True
        return False

    def _issue(self, via: str) -> Session:
        token = f"{self.organization_id}!AQ{secrets.token_urlsafe(72)}"
        now = self._monotonic()
        session = Session(token, now, now + self.session_lifetime, via)
        with self._lock:
            self._sessions[token] = session
            self.logins += 1
        return session

    def _password_ok(self, username: str | None, password: str | None) -> bool:
        expected = self.credentials.password + self.credentials.security_token
        return (
            username is not None
            and password is not None
            and hmac.compare_digest(username, self.credentials.username)
            and hmac.compare_digest(password, expected)
        )

    # ---- SOAP ----
    def soap_login(self, body: bytes, version: str, base_url: str) -> tuple[int, bytes]:
        """Answer a partner SOAP `login` call: (HTTP status, XML body)."""
        text = body.decode("utf-8", errors="replace")
        username = _soap_element(text, "username")
        password = _soap_element(text, "password")
        if not self._password_ok(username, password):
            return 500, _INVALID_LOGIN_FAULT
        if self.login_fault is not None:
            return 500, login_fault(*self.login_fault)
        session = self._issue("soap")
        return 200, self._soap_success(session, version, base_url)

    def _soap_success(self, session: Session, version: str, base_url: str) -> bytes:
        username = escape(self.credentials.username)
        org = self.organization_id_18
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body><loginResponse><result>"
            f"<metadataServerUrl>{base_url}/services/Soap/m/{version}/{org[:15]}</metadataServerUrl>"
            f"<passwordExpired>{'true' if self.password_expired else 'false'}</passwordExpired>"
            "<sandbox>false</sandbox>"
            f"<serverUrl>{base_url}/services/Soap/u/{version}/{org[:15]}</serverUrl>"
            f"<sessionId>{session.token}</sessionId><userId>{USER_ID_18}</userId>"
            "<userInfo><accessibilityMode>false</accessibilityMode><currencySymbol>$</currencySymbol>"
            "<orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit>"
            "<orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode>"
            "<orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments>"
            "<orgHasPersonAccounts>false</orgHasPersonAccounts>"
            f"<organizationId>{org}</organizationId>"
            "<organizationMultiCurrency>false</organizationMultiCurrency>"
            "<organizationName>Emulated Org</organizationName>"
            '<profileId>00eEm0000000001AAA</profileId><roleId xsi:nil="true"/>'
            f"<sessionSecondsValid>{int(self.session_lifetime)}</sessionSecondsValid>"
            '<userDefaultCurrencyIsoCode xsi:nil="true"/>'
            f"<userEmail>{username}</userEmail><userFullName>Emulator Admin</userFullName>"
            f"<userId>{USER_ID_18}</userId><userLanguage>en_US</userLanguage>"
            f"<userLocale>en_US</userLocale><userName>{username}</userName>"
            "<userTimeZone>America/Los_Angeles</userTimeZone><userType>Standard</userType>"
            "<userUiSkin>Theme3</userUiSkin></userInfo>"
            "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
        ).encode()

    # ---- OAuth 2.0 ----
    def oauth_token(
        self, form: Mapping[str, str], authorization: str | None, base_url: str
    ) -> dict[str, str]:
        """Answer the token endpoint; raises OAuthError with Salesforce's error for bad input."""
        grant = form.get("grant_type")
        if not grant:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        client_id, client_secret = _client_authentication(form, authorization)
        if grant == "refresh_token":
            self._check_client(client_id, client_secret)
            return self._refresh(form.get("refresh_token"), base_url)
        if grant == "password":
            self._check_client(client_id, client_secret)
            if not self._password_ok(form.get("username"), form.get("password")):
                raise OAuthError("invalid_grant", "authentication failure")
            return self._token_response(self._issue("password"), base_url, "api")
        if grant == "client_credentials":
            if client_id is None or client_secret is None:
                raise OAuthError("invalid_client", "invalid client credentials")
            self._check_client(client_id, client_secret)
            return self._token_response(self._issue("client_credentials"), base_url, "api")
        raise OAuthError("unsupported_grant_type", "grant type not supported")

    def _check_client(self, client_id: str | None, client_secret: str | None) -> None:
        if client_id is None or not hmac.compare_digest(client_id, self.credentials.client_id):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if client_secret is None or not hmac.compare_digest(client_secret, self.credentials.client_secret):
            raise OAuthError("invalid_client", "invalid client credentials")

    def _refresh(self, refresh_token: str | None, base_url: str) -> dict[str, str]:
        with self._lock:
            valid = refresh_token is not None and refresh_token in self._refresh_tokens
            if valid and self.rotate_refresh_tokens:
                self._refresh_tokens.discard(refresh_token)
                rotated = f"5Aep{secrets.token_urlsafe(60)}"
                self._refresh_tokens.add(rotated)
        if not valid:
            raise OAuthError("invalid_grant", "expired access/refresh token")
        response = self._token_response(self._issue("refresh_token"), base_url, "api refresh_token")
        if self.rotate_refresh_tokens:
            response["refresh_token"] = rotated
        return response

    def _token_response(self, session: Session, base_url: str, scope: str) -> dict[str, str]:
        identity = f"{base_url}/id/{self.organization_id_18}/{USER_ID_18}"
        issued_at = str(int(time.time() * 1000))
        digest = hmac.new(
            self.credentials.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
        ).digest()
        return {
            "access_token": session.token,
            "signature": base64.b64encode(digest).decode(),
            "scope": scope,
            "instance_url": base_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }


def _client_authentication(
    form: Mapping[str, str], authorization: str | None
) -> tuple[str | None, str | None]:
    """client_id and client_secret from an HTTP Basic header, else from the form."""
    if authorization and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "invalid client credentials") from None
        client_id, separator, client_secret = decoded.partition(":")
        if not separator:
            raise OAuthError("invalid_client", "invalid client credentials")
        return client_id, client_secret
    return form.get("client_id"), form.get("client_secret")


def _soap_element(text: str, local_name: str) -> str | None:
    """Text of the first element with this local name in any namespace prefix (XML-unescaped)."""
    match = re.search(
        rf"<(?:[\w.-]+:)?{local_name}(?:\s[^>]*)?>(.*?)</(?:[\w.-]+:)?{local_name}\s*>", text, re.S
    )
    return unescape(match.group(1)) if match else None


def login_fault(code: str, message: str) -> bytes:
    """A SOAP LoginFault as Salesforce sends it (HTTP 500)."""
    code_xml, message_xml = escape(code).encode(), escape(message).encode()
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        b'xmlns:sf="urn:fault.partner.soap.sforce.com" '
        b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        b"<soapenv:Body><soapenv:Fault><faultcode>" + code_xml + b"</faultcode>"
        b"<faultstring>" + code_xml + b": " + message_xml + b"</faultstring>"
        b'<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        b"<sf:exceptionCode>" + code_xml + b"</sf:exceptionCode>"
        b"<sf:exceptionMessage>" + message_xml + b"</sf:exceptionMessage>"
        b"</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )


_INVALID_LOGIN_FAULT = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    b'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    b"<soapenv:Body><soapenv:Fault><faultcode>INVALID_LOGIN</faultcode>"
    b"<faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out."
    b'</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault">'
    b"<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>"
    b"<sf:exceptionMessage>Invalid username, password, security token; or user locked out."
    b"</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
)

# Salesforce's answer to a SOAP login on a version it does not serve (a newer one during a release's
# roll-out, or a retired one): a fault, with the `sf:` prefix on its code (UnexpectedErrorFault).
UNSUPPORTED_API_VERSION_FAULT = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    b'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    b"<soapenv:Body><soapenv:Fault><faultcode>sf:UNSUPPORTED_API_VERSION</faultcode>"
    b"<faultstring>UNSUPPORTED_API_VERSION: Invalid Api version specified on URL</faultstring>"
    b'<detail><sf:UnexpectedErrorFault xsi:type="sf:UnexpectedErrorFault">'
    b"<sf:exceptionCode>UNSUPPORTED_API_VERSION</sf:exceptionCode>"
    b"<sf:exceptionMessage>Invalid Api version specified on URL</sf:exceptionMessage>"
    b"</sf:UnexpectedErrorFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
)
