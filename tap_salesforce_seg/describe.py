"""Salesforce's metadata calls: describeGlobal and object describes in composite batches.

- `describe_global(client) -> list[dict]`: the `sobjects` entries of `GET /sobjects`.
- `describe_objects(client, names, logger=None) -> dict[str, dict]`: full describes through
  `POST /composite/batch`, 25 subrequests per call (one API call per 25 objects). An object the org
  does not have (404 NOT_FOUND) is left out of the result; a subrequest that failed transiently is
  described again on its own (the client retries that); an object Salesforce refuses to describe
  (e.g. 403 INSUFFICIENT_ACCESS) is left out with a warning when a logger is given, else raises
  `SalesforceApiError`.
- `describe_object(client, name) -> dict | None`: one describe (None when the object is gone).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from tap_salesforce_seg.errors import SalesforceApiError
from tap_salesforce_seg.soql import check_identifier

BATCH_SIZE = 25  # Salesforce's limit of subrequests in one composite batch


class _Client(Protocol):
    api_version: str

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any: ...
    def post_json(self, path: str, json: Any = None) -> Any: ...


def describe_global(client: _Client) -> list[dict[str, Any]]:
    body = client.get_json("sobjects")
    sobjects = body.get("sobjects") if isinstance(body, dict) else None
    if not isinstance(sobjects, list):
        raise SalesforceApiError(200, "INVALID_RESPONSE", "describeGlobal answered without 'sobjects'")
    return sobjects


def describe_object(client: _Client, name: str) -> dict[str, Any] | None:
    try:
        return client.get_json(f"sobjects/{check_identifier(name)}/describe")
    except SalesforceApiError as error:
        if error.status == 404:
            return None
        raise


def describe_objects(
    client: _Client, names: Iterable[str], logger: logging.Logger | None = None
) -> dict[str, dict[str, Any]]:
    names = [check_identifier(name) for name in names]
    described: dict[str, dict[str, Any]] = {}
    for start in range(0, len(names), BATCH_SIZE):
        chunk = names[start : start + BATCH_SIZE]
        body = client.post_json(
            "composite/batch",
            {
                "haltOnError": False,
                "batchRequests": [
                    {"method": "GET", "url": f"v{client.api_version}/sobjects/{name}/describe"}
                    for name in chunk
                ],
            },
        )
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != len(chunk):
            raise SalesforceApiError(200, "INVALID_RESPONSE", "composite/batch answered a different shape")
        for name, result in zip(chunk, results, strict=True):
            status = int(result.get("statusCode", 0))
            if status == 200:
                described[name] = result["result"]
            elif status == 404:
                continue
            elif status >= 500 or status in (406, 429, 412):
                # A subrequest that failed transiently (or was halted): ask for it on its own.
                single = describe_object(client, name)
                if single is not None:
                    described[name] = single
            else:
                code, message = _subrequest_error(result.get("result"))
                if logger is not None:
                    logger.warning(
                        "Salesforce refused to describe %s (%s %s: %s): no stream.",
                        name,
                        status,
                        code,
                        message,
                    )
                    continue
                raise SalesforceApiError(
                    status, code, message, method="GET", path=f"sobjects/{name}/describe"
                )
    return described


def _subrequest_error(result: Any) -> tuple[str, str]:
    if isinstance(result, list) and result and isinstance(result[0], dict):
        return str(result[0].get("errorCode", "UNKNOWN")), str(result[0].get("message", ""))
    return "UNKNOWN", str(result)[:300]
