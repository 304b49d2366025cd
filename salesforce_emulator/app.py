"""Routes: Salesforce's HTTP API (and the emulator's control API) as request -> response functions.

The socket server (server.py) parses HTTP and hands every request to `App.handle`. Served:

Unauthenticated
- `GET /services/data/` : the served versions, 40.0 to 64.0 with their release labels.
- `POST /services/Soap/u/{version}` : SOAP login (a version not served: Salesforce's 500 fault
  UNSUPPORTED_API_VERSION; the versioned REST paths answer it 404 NOT_FOUND); `POST /services/oauth2/token`,
  `/services/oauth2/revoke` (see auth.py).
- `/__emulator__/<group>/<method>` : the control API (loopback clients only; see control.py).

Authenticated (`Authorization: Bearer <session>`), under `/services/data/vXX.X` (another version: 404)
- `/` resources, `/sobjects` (describeGlobal), `/sobjects/{X}` (metadata), `/sobjects/{X}/describe`,
  `/sobjects/{X}/{Id}[?fields=A,B]` (one record), `/limits`, `POST /composite/batch` (<= 25 GET
  subrequests, `haltOnError`), `/query?q=` and `/queryAll?q=` (trailing slash optional) with
  `nextRecordsUrl` paging (`/query/<locator>-<offset>`, also accepted under `/queryAll/`) and
  `Sforce-Query-Options: batchSize=N` (200..2000, default 2000), Bulk 2.0 `/jobs/query...` (bulk.py).

Every response carries `Date` from the org's clock; authenticated ones `Sforce-Limit-Info:
api-usage=N/M`. Errors are Salesforce's JSON arrays. A request target over 16,384 bytes answers 414, a
request line plus headers over 16,384 bytes 431.

API allowance: every authenticated request under /services/data/ counts one call (REST, query-more,
composite batch as one, Bulk 2.0 create/poll/results/abort/delete), whatever its outcome; logins, the
token endpoint, the versions list and the control API do not count. Past the allowance every counted
call answers 403 REQUEST_LIMIT_EXCEEDED "TotalRequests Limit exceeded." (and is not counted). The count
runs from start until `reset_counters()` (the emulator's "day" is its lifetime).

Query cursors: a query whose rows do not fit one page opens a cursor (the query's snapshot); at most
MAX_OPEN_CURSORS stay open (the oldest closes first) and a cursor idle for CURSOR_IDLE_SECONDS closes;
a closed cursor answers 400 INVALID_QUERY_LOCATOR. (Salesforce itself, since API 56.0, keeps a query's
results two days and any number of cursors open; these bounds keep the emulator's memory bounded.)
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .auth import (
    UNSUPPORTED_API_VERSION_FAULT,
    USER_ID_18,
    AuthService,
    OAuthError,
    case_safe_id,
    salesforce_id,
)
from .bulk import BulkJobs
from .control import decode_value, encode_value
from .errors import ApiError, not_found
from .faults import (
    CLOSE_CURSORS,
    DROP_CONNECTION,
    END_BULK_RESULTS,
    HTTP_ERROR,
    QUERY_TIMEOUT,
    SLOW,
    FaultPlan,
    http_error_for,
    query_timeout_error,
)

API_VERSIONS = tuple(f"{number}.0" for number in range(40, 65))
MAX_URI_BYTES = 16_384
DEFAULT_BATCH_SIZE = 2000
MIN_BATCH_SIZE = 200
MAX_COMPOSITE_SUBREQUESTS = 25
MAX_OPEN_CURSORS = 100
CURSOR_IDLE_SECONDS = 15 * 60
JSON = "application/json;charset=UTF-8"
CSV = "text/csv"
XML = "text/xml;charset=UTF-8"
CONTROL_PREFIX = "/__emulator__/"
HALF_BODY = -1  # Response.drop_after: close after half of the (final) body
_SEASONS = ("Winter", "Spring", "Summer")


def release_label(version: str) -> str:
    """Salesforce's release name for an API version: three releases a year, v20.0 was Winter '11."""
    offset = int(float(version)) - 20
    return f"{_SEASONS[offset % 3]} '{11 + offset // 3:02d}"


# ---------------------------------------------------------------- requests and responses
@dataclass
class Request:
    method: str
    target: str  # the raw request target: path and query string
    headers: Mapping[str, str]  # case-insensitive lookups (email.message.Message)
    body: bytes = b""
    client_host: str = "127.0.0.1"
    header_bytes: int = 0  # size of the request line and headers as received
    path: str = field(init=False)
    query: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        self.path = unquote(parts.path)
        self.query = {key: values[0] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json_body(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body is not valid JSON") from None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop_after: int | None = None  # fault: close the connection after this many body bytes
    route: str = ""
    # A large body in pieces instead of `body` (a query page: envelope, records, end), sent one after
    # another without joining them, so the records' buffer goes to the socket as rendered.
    parts: tuple[bytes | memoryview, ...] = ()

    def content(self) -> bytes:
        """The whole body as bytes (joins `parts` when there are any)."""
        if self.parts:
            self.body, self.parts = b"".join(self.parts), ()
        return self.body

    def pieces(self) -> tuple[bytes | memoryview, ...]:
        return self.parts or (self.body,)

    @property
    def content_length(self) -> int:
        return sum(memoryview(piece).nbytes for piece in self.pieces())

    @classmethod
    def json(cls, status: int, payload: Any) -> Response:
        return cls(status, json.dumps(payload, separators=(",", ":")).encode())

    @classmethod
    def error(cls, error: ApiError) -> Response:
        return cls.json(error.http_status, error.body())


# ---------------------------------------------------------------- counters
class ApiQuota:
    """The daily API request allowance. Thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.used = 0
        self._lock = threading.Lock()

    def consume(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def set_used(self, used: int) -> None:
        with self._lock:
            self.used = max(0, int(used))

    def header(self) -> str:
        return f"api-usage={self.used}/{self.limit}"


class RequestLog:
    """Requests seen: a count per route and the most recent requests (method, target, status, route)."""

    def __init__(self, keep: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.by_route: dict[str, int] = {}
        self.total = 0

    def record(self, method: str, target: str, status: int, route: str) -> None:
        with self._lock:
            self.total += 1
            self.by_route[route] = self.by_route.get(route, 0) + 1
            self._recent.append(
                {"method": method, "target": target, "status": status, "route": route, "at": time.time()}
            )

    def recent(self, last: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            entries = list(self._recent)
        return entries[-last:] if last else entries

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()
            self.by_route = {}
            self.total = 0


@dataclass
class Cursor:
    id: str
    result: Any
    batch_size: int
    last_used: float


class CursorStore:
    """Open REST query cursors (Salesforce's query locators). Thread-safe."""

    def __init__(self, max_open: int = MAX_OPEN_CURSORS, idle_seconds: float = CURSOR_IDLE_SECONDS) -> None:
        self._lock = threading.Lock()
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()
        self._serial = 0
        self.max_open = max_open
        self.idle_seconds = idle_seconds

    def open(self, result: Any, batch_size: int) -> Cursor:
        with self._lock:
            self._serial += 1
            cursor = Cursor(salesforce_id("01g", self._serial), result, batch_size, time.monotonic())
            self._cursors[cursor.id] = cursor
            while len(self._cursors) > self.max_open:
                self._cursors.popitem(last=False)
            return cursor

    def get(self, cursor_id: str) -> Cursor:
        now = time.monotonic()
        with self._lock:
            cursor = self._cursors.get(cursor_id)
            if cursor is None or now - cursor.last_used > self.idle_seconds:
                self._cursors.pop(cursor_id, None)
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            cursor.last_used = now
            self._cursors.move_to_end(cursor_id)
            return cursor

    def close(self, cursor_id: str) -> None:
        with self._lock:
            self._cursors.pop(cursor_id, None)

    def clear(self) -> None:
        with self._lock:
            self._cursors.clear()


# ---------------------------------------------------------------- routing
Handler = Callable[["App", Request, str, re.Match[str]], Response]


@dataclass(frozen=True)
class Route:
    name: str
    methods: tuple[str, ...]
    pattern: re.Pattern[str]
    handler: Handler


_VERSIONED = re.compile(r"^/services/data/v(?P<version>\d+\.\d+)(?P<rest>/.*)?$")
_ID = r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?"
_NAME = r"[A-Za-z][A-Za-z0-9_]*"


@dataclass
class AppOptions:
    gzip: bool = False  # compress bodies for clients that accept gzip (costs emulator CPU)


class App:
    """Salesforce's API over an `Org`; one instance per emulator, shared by the server's threads."""

    def __init__(
        self,
        org: Any,
        auth: AuthService,
        faults: FaultPlan,
        bulk: BulkJobs,
        quota: ApiQuota,
        base_url: Callable[[], str],
        options: AppOptions | None = None,
    ) -> None:
        self.org = org
        self.auth = auth
        self.faults = faults
        self.bulk = bulk
        self.quota = quota
        self.base_url = base_url
        self.options = options or AppOptions()
        self.cursors = CursorStore()
        self.log = RequestLog()
        self.control = ControlApi(self)

    # ---- entry point ----
    def handle(self, request: Request) -> Response:
        response = self._handle(request)
        if response.route != "control":  # the log shows the API traffic, not the test's own scripting
            self.log.record(request.method, request.target, response.status, response.route)
        if (
            self.options.gzip
            and response.content_length > 1024
            and "gzip" in (request.header("Accept-Encoding") or "")
        ):
            response.body = gzip.compress(response.content(), compresslevel=1)
            response.headers.append(("Content-Encoding", "gzip"))
        return response

    def _handle(self, request: Request) -> Response:
        if len(request.target.encode()) > MAX_URI_BYTES:
            return Response(414, b"URI Too Long", "text/plain", route="uri_too_long")
        if request.header_bytes > MAX_URI_BYTES:
            return Response(431, b"Request Header Fields Too Large", "text/plain", route="headers_too_large")
        if request.path.startswith(CONTROL_PREFIX):
            return self.control.handle(request)
        slow = self.faults.take(SLOW, request.target)
        if slow is not None:
            time.sleep(slow.params["seconds"])
        failure = self.faults.take(HTTP_ERROR, request.target)
        if failure is not None:
            response = Response.error(http_error_for(failure.params["status"]))
            response.route = "fault_http_error"
            return response
        try:
            response = self._dispatch(request)
        except ApiError as error:
            response = Response.error(error)
        except Exception:  # a bug of ours: answer like Salesforce, but say what happened on stderr
            traceback.print_exc(file=sys.stderr)
            response = Response.error(http_error_for(500))
        drop = self.faults.take(DROP_CONNECTION, request.target)
        if drop is not None:
            after = drop.params.get("after_bytes")
            response.drop_after = HALF_BODY if after is None else int(after)
        return response

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        if path in ("/services/data", "/services/data/"):
            return self._only(request, ("GET", "HEAD"), "versions") or self._versions()
        soap = re.fullmatch(r"/services/Soap/u/(\d+\.\d+)/?", path)
        if soap:
            return self._only(request, ("POST",), "soap_login") or self._soap_login(request, soap.group(1))
        if path.rstrip("/") == "/services/oauth2/token":
            return self._only(request, ("POST",), "oauth_token") or self._oauth_token(request)
        if path.rstrip("/") == "/services/oauth2/revoke":
            return self._only(request, ("POST", "GET"), "oauth_revoke") or self._oauth_revoke(request)
        versioned = _VERSIONED.match(path)
        if versioned is None or versioned.group("version") not in API_VERSIONS:
            raise not_found()
        version = versioned.group("version")
        rest = versioned.group("rest") or "/"
        route, match = self._route(request.method, rest)
        session = self.auth.authenticate(request.header("Authorization"))
        if session is not None and self.faults.session_call():
            self.auth.expire_all()
            session = None
        if session is None:
            response = Response.error(ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid"))
            response.headers.append(("WWW-Authenticate", "Token"))
            response.route = route.name
            return response
        if not self.quota.consume():
            response = Response.error(
                ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            )
        else:
            try:
                response = route.handler(self, request, version, match)
            except ApiError as error:
                response = Response.error(error)
        response.route = route.name
        response.headers.append(("Sforce-Limit-Info", self.quota.header()))
        return response

    def _route(self, method: str, rest: str) -> tuple[Route, re.Match[str]]:
        allowed: list[str] = []
        for route in ROUTES:
            match = route.pattern.fullmatch(rest)
            if match is None:
                continue
            if method in route.methods or (method == "HEAD" and "GET" in route.methods):
                return route, match
            allowed.extend(route.methods)
        if allowed:
            methods = ",".join(sorted(set(allowed) | ({"HEAD"} if "GET" in allowed else set())))
            raise ApiError(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {methods}"
            )
        raise not_found()

    @staticmethod
    def _only(request: Request, methods: tuple[str, ...], name: str) -> Response | None:
        if request.method in methods:
            return None
        response = Response.error(
            ApiError(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{request.method}' not allowed. Allowed are {','.join(methods)}",
            )
        )
        response.route = name
        return response

    # ---- unauthenticated ----
    def _versions(self) -> Response:
        versions = [
            {"label": release_label(version), "url": f"/services/data/v{version}", "version": version}
            for version in API_VERSIONS
        ]
        response = Response.json(200, versions)
        response.route = "versions"
        return response

    def _soap_login(self, request: Request, version: str) -> Response:
        route = "soap_login"
        if version not in API_VERSIONS:
            return Response(500, UNSUPPORTED_API_VERSION_FAULT, XML, route=route)
        status, body = self.auth.soap_login(request.body, version, self.base_url())
        return Response(status, body, XML, route=route)

    def _oauth_token(self, request: Request) -> Response:
        form = dict(request.query)
        content_type = request.header("Content-Type") or ""
        if request.body and "json" not in content_type:
            parsed = parse_qs(request.body.decode("utf-8", errors="replace"), keep_blank_values=True)
            form.update({key: values[0] for key, values in parsed.items()})
        try:
            payload = self.auth.oauth_token(form, request.header("Authorization"), self.base_url())
        except OAuthError as error:
            response = Response.json(error.http_status, error.body())
        else:
            response = Response.json(200, payload)
        response.route = "oauth_token"
        response.headers.append(("Cache-Control", "no-cache,must-revalidate,max-age=0,no-store,private"))
        return response

    def _oauth_revoke(self, request: Request) -> Response:
        token = request.query.get("token")
        if token is None and request.body:
            token = parse_qs(request.body.decode("utf-8", errors="replace")).get("token", [None])[0]
        if not token or not self.auth.revoke(token):
            response = Response.json(
                400,
                {"error": "unsupported_token_type", "error_description": "this token type is not supported"},
            )
        else:
            response = Response(200, b"", None)
        response.route = "oauth_revoke"
        return response

    # ---- REST ----
    def resources(self, request: Request, version: str, match: re.Match[str]) -> Response:
        base = f"/services/data/v{version}"
        names = [
            "tooling",
            "metadata",
            "eclair",
            "folders",
            "prechatForms",
            "contact-tracing",
            "jsonxform",
            "chatter",
            "tabs",
            "appMenu",
            "quickActions",
            "queryAll",
            "commerce",
            "wave",
            "iot",
            "analytics",
            "search",
            "smartdatadiscovery",
            "identity",
            "composite",
            "parameterizedSearch",
            "fingerprint",
            "theme",
            "nouns",
            "event",
            "serviceTemplates",
            "recent",
            "connect",
            "licensing",
            "limits",
            "process",
            "async-queries",
            "query",
            "match",
            "emailConnect",
            "compactLayouts",
            "knowledgeManagement",
            "sobjects",
            "actions",
            "support",
        ]
        payload = {name: f"{base}/{name}" for name in names}
        payload["jobs"] = f"{base}/jobs"
        payload["identity"] = f"{self.base_url()}/id/{self._identity()}"
        return Response.json(200, payload)

    def _identity(self) -> str:
        return f"{self.auth.organization_id_18}/{USER_ID_18}"

    def describe_global(self, request: Request, version: str, match: re.Match[str]) -> Response:
        return Response.json(200, self.org.describe_global(version))

    def describe(self, request: Request, version: str, match: re.Match[str]) -> Response:
        return Response.json(200, self.org.describe(match.group("sobject"), version))

    def sobject_metadata(self, request: Request, version: str, match: re.Match[str]) -> Response:
        wanted = match.group("sobject").lower()
        for entry in self.org.describe_global(version)["sobjects"]:
            if entry["name"].lower() == wanted:
                return Response.json(200, {"objectDescribe": entry, "recentItems": []})
        raise not_found()

    def record(self, request: Request, version: str, match: re.Match[str]) -> Response:
        sobject = match.group("sobject")
        record_id = match.group("id")
        if len(record_id) == 15:
            record_id = case_safe_id(record_id)
        describe = self.org.describe(sobject, version)
        stored = self.org.get(describe["name"], record_id)
        if stored is None:
            raise not_found()
        if stored.get("IsDeleted"):
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        wanted = request.query.get("fields")
        fields = (
            [name.strip() for name in wanted.split(",") if name.strip()]
            if wanted
            else [item["name"] for item in describe["fields"]]
        )
        if "Id" not in fields:
            fields.insert(0, "Id")
        soql = f"SELECT {', '.join(fields)} FROM {describe['name']} WHERE Id = '{record_id}'"
        result = self.org.query(soql, include_deleted=True)
        if result.total_size == 0:
            raise not_found()
        records = result.rest_records(0, 1, version)
        return Response(200, records.strip()[1:-1])

    def limits(self, request: Request, version: str, match: re.Match[str]) -> Response:
        return Response.json(200, self._limits(float(version)))

    def _limits(self, version: float) -> dict[str, Any]:
        def limit(maximum: int, remaining: int | None = None) -> dict[str, int]:
            return {"Max": maximum, "Remaining": maximum if remaining is None else max(0, remaining)}

        quota = self.quota
        limits: dict[str, Any] = {
            "ActiveScratchOrgs": limit(3),
            "AnalyticsExternalDataSizeMB": limit(40960),
            "ConcurrentAsyncGetReportInstances": limit(200),
            "ConcurrentSyncReportRuns": limit(20),
            "DailyAnalyticsDataflowJobExecutions": limit(60),
            "DailyApiRequests": limit(quota.limit, quota.limit - quota.used),
            "DailyAsyncApexExecutions": limit(250000),
            "DailyDurableGenericStreamingApiEvents": limit(10000),
            "DailyDurableStreamingApiEvents": limit(10000),
            "DailyGenericStreamingApiEvents": limit(10000),
            "DailyStreamingApiEvents": limit(10000),
            "DailyWorkflowEmails": limit(390),
            "DataStorageMB": limit(1024, 1000),
            "FileStorageMB": limit(20480, 20470),
            "HourlyAsyncReportRuns": limit(1200),
            "HourlyDashboardRefreshes": limit(200),
            "HourlyDashboardResults": limit(5000),
            "HourlyDashboardStatuses": limit(999999999),
            "HourlyODataCallout": limit(10000),
            "HourlySyncReportRuns": limit(500),
            "HourlyTimeBasedWorkflow": limit(50),
            "MassEmail": limit(10),
            "SingleEmail": limit(15),
            "StreamingApiConcurrentClients": limit(20),
        }
        if version >= 49.0:
            limits["DailyBulkApiBatches"] = limit(15000)
        else:
            limits["DailyBulkApiRequests"] = limit(15000)
        if version >= 47.0:
            limits["DailyBulkV2QueryFileStorageMB"] = limit(976562)
            limits["DailyBulkV2QueryJobs"] = limit(10000, 10000 - self.bulk.jobs_created)
        return dict(sorted(limits.items()))

    def composite_batch(self, request: Request, version: str, match: re.Match[str]) -> Response:
        body = request.json_body()
        subrequests = body.get("batchRequests") if isinstance(body, dict) else None
        if not isinstance(subrequests, list) or not subrequests:
            raise ApiError(400, "INVALID_BATCH_REQUEST", "batchRequests must be a non-empty list")
        if len(subrequests) > MAX_COMPOSITE_SUBREQUESTS:
            raise ApiError(
                400,
                "INVALID_BATCH_REQUEST",
                f"A batch can contain at most {MAX_COMPOSITE_SUBREQUESTS} subrequests",
            )
        halt_on_error = bool(body.get("haltOnError", False))
        results: list[dict[str, Any]] = []
        has_errors = halted = False
        for subrequest in subrequests:
            if halted:
                results.append(
                    {
                        "statusCode": 412,
                        "result": [
                            {
                                "errorCode": "BATCH_PROCESSING_HALTED",
                                "message": "Batch processing halted per request",
                            }
                        ],
                    }
                )
                continue
            status, result = self._subrequest(request, subrequest)
            results.append({"statusCode": status, "result": result})
            if status >= 400:
                has_errors = True
                halted = halt_on_error
        return Response.json(200, {"hasErrors": has_errors, "results": results})

    def _subrequest(self, parent: Request, subrequest: Any) -> tuple[int, Any]:
        if not isinstance(subrequest, dict) or not isinstance(subrequest.get("url"), str):
            error = ApiError(400, "INVALID_BATCH_REQUEST", "Each subrequest needs a method and a url")
            return error.http_status, error.body()
        method = str(subrequest.get("method", "GET")).upper()
        url = subrequest["url"]
        relative = url.removeprefix("/services/data/").lstrip("/")
        target = f"/services/data/{relative}"
        if method != "GET":
            error = ApiError(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed in this emulator's batches"
            )
            return error.http_status, error.body()
        inner = Request("GET", target, parent.headers, b"", parent.client_host)
        versioned = _VERSIONED.match(inner.path)
        try:
            if versioned is None or versioned.group("version") not in API_VERSIONS:
                raise not_found()
            route, match = self._route("GET", versioned.group("rest") or "/")
            if route.name in ("composite_batch",) or route.name.startswith("bulk"):
                raise ApiError(400, "INVALID_BATCH_REQUEST", f"{route.name} is not supported in a batch")
            response = route.handler(self, inner, versioned.group("version"), match)
        except ApiError as error:
            return error.http_status, error.body()
        body = response.content()
        if response.content_type != JSON:
            return response.status, body.decode()
        return response.status, json.loads(body) if body else None

    # ---- queries ----
    def query(self, request: Request, version: str, match: re.Match[str]) -> Response:
        include_deleted = match.group("kind") == "queryAll"
        soql = request.query.get("q")
        if soql is None or not soql.strip():
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        result = self.org.query(soql, include_deleted)
        timeout = self.faults.take(
            QUERY_TIMEOUT, request.target, when=lambda fault: result.total_size > fault.params["rows"]
        )
        if timeout is not None:
            raise query_timeout_error()
        self.faults.check_too_complicated(request.target, len(result.columns))
        batch_size = _batch_size(request.header("Sforce-Query-Options"))
        return self._query_page(result, version, 0, batch_size, None)

    def query_more(self, request: Request, version: str, match: re.Match[str]) -> Response:
        if self.faults.take(CLOSE_CURSORS, request.target):
            self.cursors.close(match.group("locator"))
        cursor = self.cursors.get(match.group("locator"))
        offset = int(match.group("offset"))
        if offset > cursor.result.total_size:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        header = request.header("Sforce-Query-Options")
        batch_size = _batch_size(header) if header else cursor.batch_size
        return self._query_page(cursor.result, version, offset, batch_size, cursor)

    def _query_page(
        self, result: Any, version: str, start: int, batch_size: int, cursor: Cursor | None
    ) -> Response:
        total = result.total_size
        if result.is_count:
            return Response(200, b'{"totalSize":%d,"done":true,"records":[]}' % total)
        stop = min(total, start + batch_size)
        records = result.rest_records_view(start, stop, version)
        if stop >= total:
            # The cursor stays open (until idle or evicted): a client may re-read its last page.
            head = b'{"totalSize":%d,"done":true,"records":' % total
        else:
            if cursor is None:
                cursor = self.cursors.open(result, batch_size)
            head = (
                b'{"totalSize":%d,"done":false,"nextRecordsUrl":"/services/data/v%s/query/%s-%d","records":'
                % (
                    total,
                    version.encode(),
                    cursor.id.encode(),
                    stop,
                )
            )
        return Response(200, parts=(head, records, b"}"))

    # ---- Bulk API 2.0 ----
    def bulk_create(self, request: Request, version: str, match: re.Match[str]) -> Response:
        return Response.json(200, self.bulk.create(request.json_body(), version))

    def bulk_list(self, request: Request, version: str, match: re.Match[str]) -> Response:
        return Response.json(200, self.bulk.list())

    def bulk_job(self, request: Request, version: str, match: re.Match[str]) -> Response:
        job_id = match.group("job")
        if request.method in ("GET", "HEAD"):
            return Response.json(200, self.bulk.info(job_id))
        if request.method == "PATCH":
            return Response.json(200, self.bulk.abort(job_id, request.json_body()))
        self.bulk.delete(job_id)
        return Response(204, b"", None)

    def bulk_results(self, request: Request, version: str, match: re.Match[str]) -> Response:
        if self.faults.take(END_BULK_RESULTS, request.target):
            return Response(204, b"", None)
        page, locator, count = self.bulk.results(
            match.group("job"), version, request.query.get("maxRecords"), request.query.get("locator")
        )
        return Response(
            200,
            page,
            CSV,
            headers=[("Sforce-Locator", locator), ("Sforce-NumberOfRecords", str(count))],
        )


def _batch_size(header: str | None) -> int:
    if not header:
        return DEFAULT_BATCH_SIZE
    match = re.search(r"batchSize\s*=\s*(\d+)", header, re.I)
    if match is None:
        return DEFAULT_BATCH_SIZE
    return max(MIN_BATCH_SIZE, min(DEFAULT_BATCH_SIZE, int(match.group(1))))


def _r(name: str, methods: tuple[str, ...], pattern: str, handler: Handler) -> Route:
    return Route(name, methods, re.compile(pattern), handler)


ROUTES: tuple[Route, ...] = (
    _r("resources", ("GET",), r"/?", App.resources),
    _r("describe_global", ("GET",), r"/sobjects/?", App.describe_global),
    _r("describe", ("GET",), rf"/sobjects/(?P<sobject>{_NAME})/describe/?", App.describe),
    _r("sobject", ("GET",), rf"/sobjects/(?P<sobject>{_NAME})/?", App.sobject_metadata),
    _r("record", ("GET",), rf"/sobjects/(?P<sobject>{_NAME})/(?P<id>{_ID})/?", App.record),
    _r("limits", ("GET",), r"/limits/?", App.limits),
    _r("composite_batch", ("POST",), r"/composite/batch/?", App.composite_batch),
    _r("query", ("GET",), r"/(?P<kind>query|queryAll)/?", App.query),
    _r(
        "query_more",
        ("GET",),
        r"/(?:query|queryAll)/(?P<locator>01g[A-Za-z0-9]{15})-(?P<offset>\d+)/?",
        App.query_more,
    ),
    _r("bulk_create", ("POST",), r"/jobs/query/?", App.bulk_create),
    _r("bulk_list", ("GET",), r"/jobs/query/?", App.bulk_list),
    _r("bulk_job", ("GET", "PATCH", "DELETE"), r"/jobs/query/(?P<job>[A-Za-z0-9]{15,18})/?", App.bulk_job),
    _r("bulk_results", ("GET",), r"/jobs/query/(?P<job>[A-Za-z0-9]{15,18})/results/?", App.bulk_results),
)


# ---------------------------------------------------------------- the control API (server side)
class ControlApi:
    """`POST /__emulator__/<group>/<method>` with JSON keyword arguments; see control.py."""

    ORG_METHODS = frozenset(
        [
            "create",
            "update",
            "delete",
            "undelete",
            "hard_delete",
            "late_commit",
            "recalculate",
            "add_field",
            "remove_field",
            "add_object",
            "remove_object",
            "reset",
            "get",
            "records",
            "object_names",
        ]
    )
    CLOCK_METHODS = frozenset(["now", "set", "advance", "freeze", "unfreeze"])
    FAULT_METHODS = frozenset(
        [
            "http_error",
            "expire_sessions_after",
            "drop_connection",
            "slow",
            "query_timeout",
            "fail_bulk_jobs",
            "close_cursors",
            "query_too_complicated",
            "end_bulk_results",
            "active",
            "remove",
            "reset",
        ]
    )
    EMULATOR_METHODS = frozenset(
        ["counters", "requests", "expire_sessions", "set_api_usage", "reset_counters", "info"]
    )

    def __init__(self, app: App) -> None:
        self.app = app

    def handle(self, request: Request) -> Response:
        response = self._handle(request)
        response.route = "control"
        return response

    def _handle(self, request: Request) -> Response:
        if not _is_loopback(request.client_host):
            return _control_error(403, "Forbidden", "the control API answers loopback clients only")
        parts = request.path[len(CONTROL_PREFIX) :].strip("/").split("/")
        if len(parts) != 2:
            return _control_error(404, "NotFound", f"no control endpoint {request.path}")
        group, method = parts
        target = self._target(group, method)
        if target is None:
            return _control_error(404, "NotFound", f"no control method {group}/{method}")
        if request.method not in ("POST", "GET"):
            return _control_error(405, "MethodNotAllowed", "use POST (or GET for calls without arguments)")
        try:
            kwargs = json.loads(request.body) if request.body else {}
        except ValueError:
            return _control_error(400, "BadRequest", "the body must be a JSON object of keyword arguments")
        if not isinstance(kwargs, dict):
            return _control_error(400, "BadRequest", "the body must be a JSON object of keyword arguments")
        kwargs = {key: value for key, value in decode_value(kwargs).items() if value is not None}
        try:
            result = target(**kwargs)
        except ApiError as error:
            return _control_error(404 if error.http_status == 404 else 400, error.error_code, error.message)
        except (TypeError, ValueError, KeyError, LookupError) as error:
            return _control_error(400, type(error).__name__, str(error))
        return Response.json(200, {"result": encode_value(result)})

    def _target(self, group: str, method: str) -> Callable[..., Any] | None:
        app = self.app
        if group == "org" and method in self.ORG_METHODS:
            return getattr(app.org, method)
        if group == "clock" and method in self.CLOCK_METHODS:
            return getattr(app.org.clock, method)
        if group == "faults" and method in self.FAULT_METHODS:
            return getattr(app.faults, method)
        if group == "emulator" and method in self.EMULATOR_METHODS:
            return getattr(self, method)
        return None

    # ---- emulator-level calls ----
    def counters(self) -> dict[str, Any]:
        app = self.app
        return {
            "api_usage": app.quota.used,
            "api_limit": app.quota.limit,
            "requests_total": app.log.total,
            "requests_by_route": dict(app.log.by_route),
            "logins": app.auth.logins,
            "bulk_jobs_created": app.bulk.jobs_created,
        }

    def requests(self, last: int | None = None) -> list[dict[str, Any]]:
        return self.app.log.recent(last)

    def expire_sessions(self) -> int:
        return self.app.auth.expire_all()

    def set_api_usage(self, used: int) -> None:
        self.app.quota.set_used(used)

    def reset_counters(self) -> None:
        self.app.quota.set_used(0)
        self.app.log.reset()

    def info(self) -> dict[str, Any]:
        return {"base_url": self.app.base_url(), "api_versions": list(API_VERSIONS)}


def _control_error(status: int, error_type: str, message: str) -> Response:
    return Response.json(status, {"error": {"type": error_type, "message": message}})


def _is_loopback(host: str) -> bool:
    return host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1", "localhost")
