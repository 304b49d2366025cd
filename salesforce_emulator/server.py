"""`Emulator`: a Salesforce org served over real HTTP(S) from a background thread.

    with Emulator(OrgConfig(scale=0.02), tls=True) as emu:
        emu.base_url        # "https://127.0.0.1:PORT"
        emu.org             # the Org (Python control API); emu.faults (FaultPlan); emu.credentials
        emu.ca_file         # CA .pem to trust (tls only); emu.api_usage; emu.requests(); emu.counters()

The server is the standard library's ThreadingHTTPServer speaking HTTP/1.1 with keep-alive (one thread per
connection, Nagle off). A response's headers and body pieces leave in gathering `sendmsg` calls, a query
page's records straight from the buffer they were rendered into (no copy; see store.py). TLS handshakes
happen in the connection's thread, so a slow client never blocks the accept loop. Loopback only by
default: binding another address needs `allow_remote=True`.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import shlex
import socket
import ssl
import sys
import threading
from datetime import UTC
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .app import HALF_BODY, ApiQuota, App, AppOptions, Request, Response
from .auth import ORGANIZATION_ID, AuthService, Credentials
from .bulk import BulkJobs, BulkTiming
from .faults import FaultPlan
from .tls import TlsMaterial, create_tls_material

MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_REQUEST_LINE = 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 120  # an idle keep-alive connection's thread ends after this
    server: _Server

    def handle_one_request(self) -> None:
        # The standard library refuses request lines over 64 KiB itself; read longer ones so that the
        # app answers every over-long URI with its own 414.
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.parse_request():
                return
            method = getattr(self, f"do_{self.command}", None)
            if method is None:
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")
                return
            method()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except ValueError as error:
            self._write(Response(400, str(error).encode(), "text/plain"), head=False)
            self.close_connection = True
            return
        header_bytes = (
            len(self.requestline)
            + 2
            + sum(len(name) + len(value) + 4 for name, value in self.headers.items())
        )
        request = Request(self.command, self.path, self.headers, body, self.client_address[0], header_bytes)
        response = self.server.app.handle(request)
        self._write(response, head=self.command == "HEAD")

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = _serve

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            size = 0
            while True:
                line = self.rfile.readline(65537)
                length = int(line.split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += length
                if size > MAX_BODY_BYTES:
                    raise ValueError("request body too large")
                chunks.append(self.rfile.read(length))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _write(self, response: Response, head: bool) -> None:
        self.send_response_only(response.status)
        self.send_header("Date", self.server.http_date())
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(response.content_length))
        if response.drop_after is not None:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n")
        header = b"".join(self._headers_buffer)
        self._headers_buffer = []
        if head:
            self.wfile.write(header)
            return
        if response.drop_after is None:
            send_buffers(self.connection, (header, *response.pieces()))
            return
        # The scripted fault: a connection that dies in the middle of the body.
        self.wfile.write(header)
        body = response.content()
        cut = len(body) // 2 if response.drop_after == HALF_BODY else min(response.drop_after, len(body))
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: clients' stdout/stderr stay clean
        if self.server.verbose:
            sys.stderr.write(f"salesforce-emulator: {self.address_string()} {format % args}\n")


def send_buffers(connection: socket.socket, buffers: tuple[Any, ...]) -> None:
    """Send the buffers in order without joining them: one gathering `sendmsg` call at a time on plain
    sockets (the headers and a page's pieces leave in one call, the records straight from their buffer),
    one `sendall` per buffer on TLS sockets."""
    if isinstance(connection, ssl.SSLSocket):
        for buffer in buffers:
            connection.sendall(buffer)
        return
    views = [view for view in (memoryview(buffer).cast("B") for buffer in buffers) if view.nbytes]
    while views:
        sent = connection.sendmsg(views)
        while sent and views:
            if sent >= views[0].nbytes:
                sent -= views.pop(0).nbytes
            else:
                views[0] = views[0][sent:]
                sent = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], app: App, org: Any, context: ssl.SSLContext | None, verbose: bool
    ) -> None:
        self.app = app
        self.org = org
        self.context = context
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def http_date(self) -> str:
        return email.utils.format_datetime(self.org.clock.now().astimezone(UTC), usegmt=True)

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            if self.context is not None:
                request.settimeout(30)
                try:
                    request = self.context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                with self._connections_lock:
                    self._connections.add(request)
            self.RequestHandlerClass(request, client_address, self)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (and the drop-connection fault) are normal here.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Server6(_Server):
    address_family = socket.AF_INET6


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Emulator:
    """A running (or startable) emulated org. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        config: Any = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        session_lifetime: float = 7200.0,
        api_limit: int = 100_000,
        credentials: Credentials | None = None,
        *,
        tls_dir: Path | str | None = None,
        rotate_refresh_tokens: bool = False,
        organization_id: str = ORGANIZATION_ID,
        gzip: bool = False,
        bulk_timing: BulkTiming | None = None,
        allow_remote: bool = False,
        verbose: bool = False,
        org: Any = None,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"refusing to listen on {host}: not a loopback address (pass allow_remote=True)")
        if org is None:
            from .org import Org, OrgConfig

            org = Org(config if config is not None else OrgConfig())
        self.org = org
        self.host = host
        self.port = port
        self.tls = tls
        self.tls_dir = tls_dir
        self.verbose = verbose
        self.credentials = credentials or Credentials()
        self.faults = FaultPlan()
        self.auth = AuthService(
            self.credentials, session_lifetime, rotate_refresh_tokens, organization_id=organization_id
        )
        self.quota = ApiQuota(api_limit)
        self.bulk = BulkJobs(org, self.faults, bulk_timing)
        self.app = App(
            org, self.auth, self.faults, self.bulk, self.quota, lambda: self.base_url, AppOptions(gzip)
        )
        self.tls_material: TlsMaterial | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----
    def start(self) -> Emulator:
        if self._server is not None:
            return self
        context = None
        if self.tls:
            self.tls_material = create_tls_material(self.tls_dir, self.host)
            context = self.tls_material.server_context()
        server_class = _Server6 if ":" in self.host else _Server
        self._server = server_class((self.host, self.port), self.app, self.org, context, self.verbose)
        self.port = self._server.server_address[1]
        if hasattr(self.org, "instance_url"):
            self.org.instance_url = self.base_url  # describe's ui* URLs name the emulator
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="salesforce-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # ---- facts about it ----
    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else "::1" if self.host == "::" else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def ca_file(self) -> str | None:
        return str(self.tls_material.ca_file) if self.tls_material else None

    @property
    def api_usage(self) -> int:
        return self.quota.used

    @api_usage.setter
    def api_usage(self, used: int) -> None:
        self.quota.set_used(used)

    @property
    def api_limit(self) -> int:
        return self.quota.limit

    def counters(self) -> dict[str, Any]:
        return self.app.control.counters()

    def requests(self, last: int | None = None) -> list[dict[str, Any]]:
        """The most recent requests seen: method, target, status, route."""
        return self.app.log.recent(last)

    def expire_sessions(self) -> int:
        return self.auth.expire_all()

    def reset_counters(self) -> None:
        self.app.control.reset_counters()

    def start_line(self) -> str:
        """The CLI's ready line: base URL, then the credentials (and the CA file) as key=value."""
        pairs = dict(self.credentials.as_pairs())
        if self.ca_file:
            pairs["ca_file"] = self.ca_file
        return " ".join([self.base_url, *(f"{key}={shlex.quote(value)}" for key, value in pairs.items())])
