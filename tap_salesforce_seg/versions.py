"""Whether Salesforce serves the configured API version, asked only to explain a failure.

An `api_version` newer than the org's release (set during a release's weeks-long roll-out, when
sandboxes have it before production) or retired makes Salesforce answer the SOAP login with the fault
UNSUPPORTED_API_VERSION and every REST call with 404 NOT_FOUND "The requested resource does not exist",
which names neither the setting nor what would work. `GET /services/data/` (no session needed) lists the
versions a host serves, so the error can say which to set.
"""

from __future__ import annotations

from typing import Any

import requests

from tap_salesforce_seg.config import DEFAULT_API_VERSION
from tap_salesforce_seg.errors import ConfigError


def served_versions(http: requests.Session, base_url: str) -> list[str] | None:
    """The API versions the host serves, oldest first; None when it cannot say (the question is only
    asked to explain another error, so its own failure changes nothing)."""
    try:
        response = http.get(f"{base_url.rstrip('/')}/services/data/", timeout=(10, 30))
        listed: Any = response.json() if response.status_code == 200 else None
    except Exception:  # whatever went wrong asking, the error being explained is the one to report
        return None
    if not isinstance(listed, list):
        return None
    versions = [entry.get("version") for entry in listed if isinstance(entry, dict)]
    numbers = [version for version in versions if isinstance(version, str)]
    return sorted(numbers, key=_number) or None


def unserved_version(http: requests.Session, base_url: str, version: str) -> ConfigError | None:
    """The error to raise when the host does not serve ``version`` (None when it does, or cannot say)."""
    versions = served_versions(http, base_url)
    if versions is None or version in versions:
        return None
    newest = versions[-1]
    advice = (
        f"set api_version to {newest} or older"
        if _number(version) > _number(newest)
        else f"set api_version to {versions[0]} or newer"
    )
    return ConfigError(
        f"api_version: Salesforce at {base_url} serves API versions {versions[0]} to {newest}, not "
        f"{version}; {advice}, or leave it out (the default is {DEFAULT_API_VERSION})"
    )


def _number(version: str) -> float:
    try:
        return float(version)
    except ValueError:
        return 0.0
