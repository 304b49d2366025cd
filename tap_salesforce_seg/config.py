"""Typed, validated settings: `TapConfig.from_mapping(dict) -> TapConfig`.

Every problem raises `ConfigError("<setting>: <what>")`: one line that names the setting, never
echoes a secret, and happens before any network call.

Login methods (exactly one):
- `username` + `password` + `security_token`: SOAP login (`security_token` may be "" for orgs that
  trust the caller's IP range).
- `client_id` + `client_secret` + `refresh_token` (or `refresh_token_file`, a file holding it): OAuth
  refresh-token flow.
- `client_id` + `client_secret`: OAuth client-credentials flow (My Domain orgs only).

`domain`: `login` (default), `test`, a My Domain host (`acme.my`, `acme--uat.sandbox.my`, or the whole
`acme.my.salesforce.com`), or a base URL (`https://acme.my.salesforce.com`; plain `http://` only for
a local emulator on a loopback address). `is_sandbox: true` means `test`.
Derived: `login_base_url`, e.g. `https://login.salesforce.com`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from tap_salesforce_seg import token_file
from tap_salesforce_seg.errors import ConfigError

AUTH_PASSWORD = "password"
AUTH_REFRESH_TOKEN = "refresh_token"
AUTH_CLIENT_CREDENTIALS = "client_credentials"

API_TYPES = ("auto", "rest", "bulk")
NAMINGS = ("segment", "salesforce")
SECRET_SETTINGS = ("password", "security_token", "client_secret", "refresh_token")
PASSWORD_SETTINGS = ("username", "password", "security_token")
OAUTH_SETTINGS = ("client_id", "client_secret", "refresh_token")

DEFAULT_API_VERSION = "58.0"
# Bulk API 2.0 queries (and composite/batch describes) need 47.0 or later.
MINIMUM_API_VERSION = 47
DEFAULT_LOOKBACK_SECONDS = 600
DEFAULT_BULK_MIN_RECORDS = 50_000
# Salesforce retries a Bulk query job up to 15 times of about 10 minutes each before failing it, so a
# healthy job finishes within ~2.5 h plus its time in the org's queue; a job still running after 4 h is
# stuck, and the window is read through REST instead of waiting without end.
DEFAULT_BULK_JOB_TIMEOUT_SECONDS = 4 * 60 * 60
DEFAULT_QUOTA_PERCENT = 80.0
DEFAULT_STATE_EVERY_RECORDS = 10_000

_API_VERSION = re.compile(r"^(\d{2,3})\.0$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_LOOPBACK_NAMES = ("localhost",)
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")


@dataclasses.dataclass(frozen=True)
class TapConfig:
    """The tap's settings after validation. Secrets are left out of `repr`."""

    auth_mode: str
    domain: str
    login_base_url: str
    api_version: str = DEFAULT_API_VERSION
    start_date: datetime | None = None
    lookback_seconds: int = DEFAULT_LOOKBACK_SECONDS
    api_type: str = "auto"
    bulk_min_records: int = DEFAULT_BULK_MIN_RECORDS
    bulk_job_timeout_seconds: int = DEFAULT_BULK_JOB_TIMEOUT_SECONDS
    quota_percent: float = DEFAULT_QUOTA_PERCENT
    state_every_records: int = DEFAULT_STATE_EVERY_RECORDS
    naming: str = "segment"
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    security_token: str | None = dataclasses.field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = dataclasses.field(default=None, repr=False)
    refresh_token: str | None = dataclasses.field(default=None, repr=False)
    refresh_token_file: str | None = None  # where refresh_token came from, rewritten when it rotates

    @property
    def is_production_login(self) -> bool:
        """True when logging in through login.salesforce.com (the sandbox hint applies)."""
        return self.domain == "login"

    def secret_values(self) -> list[str]:
        """The configured secret values (for redaction and for tests that grep outputs)."""
        values = (getattr(self, name) for name in SECRET_SETTINGS)
        return [value for value in values if value]

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> TapConfig:
        """Validate raw settings (a config file, Meltano, env); raise ConfigError on the first problem."""
        auth_mode = _auth_mode(settings)
        domain = _domain(settings)
        if auth_mode == AUTH_CLIENT_CREDENTIALS and domain in ("login", "test"):
            raise ConfigError(
                f"domain: the client credentials flow (client_id + client_secret without refresh_token) "
                f"needs your My Domain host (e.g. acme.my) or its URL, not '{domain}'"
            )
        return cls(
            auth_mode=auth_mode,
            domain=domain,
            login_base_url=login_base_url(domain),
            api_version=_api_version(settings),
            start_date=_start_date(settings),
            lookback_seconds=_integer(settings, "lookback_seconds", DEFAULT_LOOKBACK_SECONDS, minimum=0),
            api_type=_choice(settings, "api_type", API_TYPES),
            bulk_min_records=_integer(settings, "bulk_min_records", DEFAULT_BULK_MIN_RECORDS, minimum=0),
            bulk_job_timeout_seconds=_integer(
                settings, "bulk_job_timeout_seconds", DEFAULT_BULK_JOB_TIMEOUT_SECONDS, minimum=0
            ),
            quota_percent=_quota_percent(settings),
            state_every_records=_integer(
                settings, "state_every_records", DEFAULT_STATE_EVERY_RECORDS, minimum=1
            ),
            naming=_choice(settings, "naming", NAMINGS),
            username=_string(settings, "username"),
            password=_string(settings, "password"),
            security_token=_string(settings, "security_token", allow_empty=True),
            client_id=_string(settings, "client_id"),
            client_secret=_string(settings, "client_secret"),
            refresh_token=_refresh_token(settings),
            refresh_token_file=_string(settings, token_file.SETTING),
        )


def login_base_url(domain: str) -> str:
    """The URL login requests go to, for a domain that `_domain` accepted."""
    if domain.startswith(("http://", "https://")):
        return domain
    if domain.endswith(".salesforce.com"):
        return f"https://{domain}"
    return f"https://{domain}.salesforce.com"


# --- login method -----------------------------------------------------------------------------------


def _present(settings: Mapping[str, Any], name: str) -> bool:
    value = settings.get(name)
    if name == "security_token":
        return value is not None
    return value is not None and value != ""


def _auth_mode(settings: Mapping[str, Any]) -> str:
    password_given = [name for name in PASSWORD_SETTINGS if _present(settings, name)]
    oauth_given = [name for name in (*OAUTH_SETTINGS, token_file.SETTING) if _present(settings, name)]
    if password_given and oauth_given:
        raise ConfigError(
            f"{password_given[0]}, {oauth_given[0]}: two login methods are configured "
            "(username/password/security_token and client_id/client_secret/refresh_token); keep one"
        )
    if password_given:
        _require(settings, PASSWORD_SETTINGS, "the username/password login")
        return AUTH_PASSWORD
    if oauth_given:
        if _present(settings, "refresh_token") and _present(settings, token_file.SETTING):
            raise ConfigError(
                f"refresh_token, {token_file.SETTING}: both are set; keep one (the file, to keep the "
                "token Salesforce rotates)"
            )
        if _present(settings, token_file.SETTING):
            _require(settings, ("client_id", "client_secret"), "the refresh-token login")
            return AUTH_REFRESH_TOKEN
        if _present(settings, "refresh_token"):
            _require(settings, OAUTH_SETTINGS, "the refresh-token login")
            return AUTH_REFRESH_TOKEN
        _require(settings, ("client_id", "client_secret"), "the client credentials login")
        return AUTH_CLIENT_CREDENTIALS
    raise ConfigError(
        "username: no credentials are configured; set username + password + security_token, "
        "or client_id + client_secret + refresh_token, or client_id + client_secret (client credentials)"
    )


def _refresh_token(settings: Mapping[str, Any]) -> str | None:
    """The refresh token: the setting's, or the one its file holds (read at each start)."""
    path = _string(settings, token_file.SETTING)
    if path is None:
        return _string(settings, "refresh_token")
    return token_file.read_token(path)


def _require(settings: Mapping[str, Any], names: tuple[str, ...], method: str) -> None:
    for name in names:
        if not _present(settings, name):
            raise ConfigError(f"{name}: missing; {method} needs {', '.join(names)}")


# --- domain -----------------------------------------------------------------------------------------


def _domain(settings: Mapping[str, Any]) -> str:
    is_sandbox = _boolean(settings, "is_sandbox")
    raw = settings.get("domain")
    if raw is None or raw == "":
        return "test" if is_sandbox else "login"
    if not isinstance(raw, str):
        raise ConfigError(
            "domain: must be a string such as login, test, acme.my or https://acme.my.salesforce.com"
        )
    domain = _normalise_domain(raw.strip())
    if is_sandbox and domain != "test" and ".sandbox." not in f".{domain}.":
        raise ConfigError(
            f"is_sandbox: true means domain 'test', but domain is '{domain}'; remove one of the two settings"
        )
    return domain


def _normalise_domain(raw: str) -> str:
    lowered = raw.lower()
    if lowered in ("login", "test"):
        return lowered
    if lowered.startswith(("http://", "https://")):
        return _base_url(raw)
    if "://" in lowered:
        raise ConfigError(f"domain: '{raw}' is not an http(s) URL")
    host = lowered.rstrip(".")
    if _HOST.match(host) and (host.endswith(".my") or host.endswith(".salesforce.com")):
        return host
    raise ConfigError(
        f"domain: '{raw}' is not login, test, a My Domain host (acme.my, acme--uat.sandbox.my) "
        "or a base URL (https://acme.my.salesforce.com)"
    )


def _base_url(raw: str) -> str:
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as error:
        raise ConfigError(f"domain: '{raw}' is not a valid URL ({error})") from None
    host = parts.hostname
    if not host or parts.username or parts.password:
        raise ConfigError(f"domain: '{raw}' has no host name (or carries credentials)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"domain: '{raw}' must be a base URL without a path, e.g. https://acme.my.salesforce.com"
        )
    scheme = parts.scheme.lower()
    if scheme == "http" and not _is_loopback(host):
        raise ConfigError(
            f"domain: '{raw}' uses plain http, allowed only for a local emulator (localhost, 127.0.0.1); "
            "use https"
        )
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}"


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- scalar settings --------------------------------------------------------------------------------


def _string(settings: Mapping[str, Any], name: str, *, allow_empty: bool = False) -> str | None:
    value = settings.get(name)
    if value is None or (value == "" and not allow_empty):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name}: must be a string")
    return value


def _boolean(settings: Mapping[str, Any], name: str) -> bool:
    value = settings.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{name}: must be true or false, got {value!r}")


def _integer(settings: Mapping[str, Any], name: str, default: int, *, minimum: int) -> int:
    value = settings.get(name)
    if value is None or value == "":
        return default
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (isinstance(value, (float, Decimal)) and value == int(value)) or (
        isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value)
    ):
        number = int(value)
    if number is None:
        raise ConfigError(f"{name}: must be a whole number, got {value!r}")
    if number < minimum:
        raise ConfigError(f"{name}: must be {minimum} or more, got {number}")
    return number


def _quota_percent(settings: Mapping[str, Any]) -> float:
    value = settings.get("quota_percent")
    if value is None or value == "":
        return DEFAULT_QUOTA_PERCENT
    number: float | None = None
    # singer-sdk reads config files with JSON floats as Decimal (Meltano writes `80.0` for a decimal).
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or number != number:  # NaN
        raise ConfigError(f"quota_percent: must be a number between 0 and 100, got {value!r}")
    if not 0 < number <= 100:
        raise ConfigError(f"quota_percent: must be more than 0 and at most 100, got {value!r}")
    return number


def _choice(settings: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = settings.get(name)
    if value is None or value == "":
        return choices[0]
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise ConfigError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
    return value.strip().lower()


def _api_version(settings: Mapping[str, Any]) -> str:
    value = settings.get("api_version")
    if value is None or value == "":
        return DEFAULT_API_VERSION
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ConfigError(f'api_version: must look like "58.0", got {value!r}')
    text = f"{value}.0" if isinstance(value, int) else str(value).strip()
    match = _API_VERSION.match(text.removeprefix("v"))
    if not match:
        raise ConfigError(f'api_version: must look like "58.0", got {value!r}')
    if int(match.group(1)) < MINIMUM_API_VERSION:
        raise ConfigError(
            f"api_version: {match.group(0)} is too old; the tap needs {MINIMUM_API_VERSION}.0 or later "
            "(Bulk API 2.0 queries)"
        )
    return match.group(0)


def _start_date(settings: Mapping[str, Any]) -> datetime | None:
    value = settings.get("start_date")
    if value is None or value == "":
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        raise ConfigError(
            f"start_date: {value!r} is not a date-time; use ISO 8601 such as 2024-01-01T00:00:00Z"
        )
    return parsed


def parse_datetime(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO 8601 text (date-only means midnight UTC), else None."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        # Salesforce's own form has no colon in the offset: 2024-01-02T03:04:05.000+0000.
        text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text) if "T" in text else text
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
