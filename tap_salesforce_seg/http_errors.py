"""HTTP failures in a few words: what a user can act on, instead of urllib3's nested reprs or a page's HTML.

- `page_summary(text)`: an error body that is not Salesforce's JSON (a proxy's, a load balancer's or a
  captive portal's page): an HTML page by its title, anything else shortened to one line.
- `network_failure(error, where)`: a request that got no HTTP answer. A certificate that does not verify
  is a `TapError` (retrying cannot help; a proxy that re-signs HTTPS needs its CA in
  `REQUESTS_CA_BUNDLE`); anything else (a name that does not resolve, a refused or dropped connection,
  no answer in time) is a `TransientError`, retried by the client.
"""

from __future__ import annotations

import re

import requests

from tap_salesforce_seg.errors import TapError, TransientError

MAX_DETAIL = 200
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_CERTIFICATE = re.compile(r"certificate verify failed: ([^(')\"]+)|(Hostname mismatch[^(')\"]*)")
# What the exception text says (urllib3 nests the cause in its message), and what to say instead.
_CAUSES = (
    ("NameResolutionError", "the host name does not resolve"),
    ("Name or service not known", "the host name does not resolve"),
    ("Temporary failure in name resolution", "the host name does not resolve (for now?)"),
    ("Connection refused", "the connection was refused"),
    ("Connection reset", "the connection was reset"),
    ("RemoteDisconnected", "the server closed the connection without answering"),
    ("Network is unreachable", "the network is unreachable"),
)


def page_summary(text: str) -> str:
    """An error page in a few words: an HTML page by its title, anything else shortened."""
    if "<html" not in text[:1000].lower():
        return shorten(text)
    title = _TITLE.search(text)
    return f'an HTML page titled "{shorten(title.group(1))}"' if title else "an HTML page"


def shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "..."


def network_failure(error: requests.RequestException, where: str) -> TapError:
    """The error to raise for a request at `where` (e.g. "SOAP login at https://...") that failed."""
    text = str(error)
    certificate = _CERTIFICATE.search(text)
    if isinstance(error, requests.exceptions.SSLError) and certificate:
        reason = (certificate.group(1) or certificate.group(2)).strip().rstrip(".")
        return TapError(
            f"{where}: the server's TLS certificate does not verify ({reason}); if a proxy re-signs "
            "HTTPS traffic here, point REQUESTS_CA_BUNDLE at its CA certificate"
        )
    if isinstance(error, requests.Timeout):
        return TransientError(f"{where}: no answer in time ({type(error).__name__})")
    for marker, reason in _CAUSES:
        if marker in text:
            return TransientError(f"{where}: {reason}")
    return TransientError(f"{where}: {type(error).__name__}: {shorten(text)}")
