"""`salesforce-emulator` (also `python -m salesforce_emulator`): serve an emulated org until stopped.

When it is ready it prints exactly one line to stdout and flushes it: the base URL, then the credentials
as key=value pairs (values shell-quoted), then `ca_file=<path>.pem` with --tls, for example

    http://127.0.0.1:41234 username=admin@example.com password=password security_token=TOKEN \
        client_id=emulator-client-id client_secret=emulator-client-secret refresh_token=emulator-refresh-token

(one line; wrapped here).
Progress goes to stderr. SIGINT and SIGTERM stop it cleanly (exit status 0).

Fault flags (COUNT is a number, or `*` for "every matching request until reset"):
  --fail-http STATUS:COUNT[:PATH]   answer 500 or 503 to the next COUNT requests (whose target contains PATH)
  --expire-sessions-after N         let N authenticated calls through, then expire every session
  --drop-connection COUNT[:PATH]    send headers and half the body, then close the connection
  --slow SECONDS[:COUNT[:PATH]]     delay responses (COUNT defaults to `*`)
  --query-timeout-rows N[:COUNT]    QUERY_TIMEOUT for REST queries matching more than N rows (default `*`)
  --fail-bulk-jobs N                the next N Bulk 2.0 query jobs end Failed
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .auth import ORGANIZATION_ID, Credentials
from .faults import FaultPlan
from .server import Emulator

DEFAULTS = Credentials()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="salesforce-emulator",
        description="A local Salesforce org: REST, Bulk 2.0, SOAP login and OAuth as Salesforce serves them.",
    )
    network = parser.add_argument_group("network")
    network.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    network.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    network.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    network.add_argument("--tls", action="store_true", help="serve https with a CA made at start")
    network.add_argument(
        "--tls-dir", type=Path, help="folder for the CA and certificate (default: a temp folder)"
    )
    network.add_argument("--gzip", action="store_true", help="gzip responses for clients that accept it")
    network.add_argument("--verbose", action="store_true", help="log every request to stderr")

    org = parser.add_argument_group("org")
    org.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    org.add_argument("--scale", type=float, default=1.0, help="record-count scale factor (default 1.0)")
    org.add_argument(
        "--count",
        action="append",
        default=[],
        metavar="OBJECT=N",
        help="record count for one object (repeatable)",
    )
    org.add_argument("--no-tags", action="store_true", help="without the 13 *Tag objects")
    org.add_argument("--no-schedules", action="store_true", help="without OpportunityLineItemSchedule")
    org.add_argument("--no-custom", action="store_true", help="without custom objects and fields")
    org.add_argument("--wide-object", metavar="OBJECT", help="add many custom fields to this object")
    org.add_argument("--wide-fields", type=int, default=1000, help="how many (default 1000)")
    org.add_argument(
        "--describe-dir", type=Path, help="also serve the objects described by DIR/<Object>.json"
    )
    org.add_argument("--describe-dir-only", action="store_true", help="serve only the --describe-dir objects")

    auth = parser.add_argument_group("authentication and limits")
    auth.add_argument("--username", default=DEFAULTS.username)
    auth.add_argument("--password", default=DEFAULTS.password)
    auth.add_argument("--security-token", default=DEFAULTS.security_token)
    auth.add_argument("--client-id", default=DEFAULTS.client_id)
    auth.add_argument("--client-secret", default=DEFAULTS.client_secret)
    auth.add_argument("--refresh-token", default=DEFAULTS.refresh_token)
    auth.add_argument(
        "--rotate-refresh-tokens", action="store_true", help="answer refreshes with a new refresh token"
    )
    auth.add_argument("--session-lifetime", type=float, default=7200.0, help="seconds (default 7200)")
    auth.add_argument(
        "--organization-id",
        type=_organization_id,
        default=ORGANIZATION_ID,
        help=f"the org's 15-character id, 00D... (default {ORGANIZATION_ID}): a second emulated org",
    )
    auth.add_argument(
        "--api-limit", type=int, default=100_000, help="daily API requests allowed (default 100000)"
    )

    faults = parser.add_argument_group("faults")
    faults.add_argument("--fail-http", action="append", default=[], metavar="STATUS:COUNT[:PATH]")
    faults.add_argument("--expire-sessions-after", type=int, metavar="N")
    faults.add_argument("--drop-connection", action="append", default=[], metavar="COUNT[:PATH]")
    faults.add_argument("--slow", action="append", default=[], metavar="SECONDS[:COUNT[:PATH]]")
    faults.add_argument("--query-timeout-rows", metavar="N[:COUNT]")
    faults.add_argument("--fail-bulk-jobs", type=int, metavar="N")
    return parser


def _organization_id(text: str) -> str:
    if not re.fullmatch(r"00D[0-9A-Za-z]{12}", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a 15-character org id (00D and 12 letters or digits)"
        )
    return text


def _count(text: str) -> int | None:
    return None if text in ("*", "") else int(text)


def arm_faults(plan: FaultPlan, args: argparse.Namespace) -> None:
    """Turn the fault flags into armed faults (ValueError for malformed flags)."""
    for spec in args.fail_http:
        status, count, *path = spec.split(":", 2)
        plan.http_error(int(status), _count(count), path[0] if path else None)
    if args.expire_sessions_after is not None:
        plan.expire_sessions_after(args.expire_sessions_after)
    for spec in args.drop_connection:
        count, *path = spec.split(":", 1)
        plan.drop_connection(_count(count), path[0] if path else None)
    for spec in args.slow:
        seconds, *rest = spec.split(":", 2)
        plan.slow(float(seconds), _count(rest[0]) if rest else None, rest[1] if len(rest) > 1 else None)
    if args.query_timeout_rows:
        rows, *count = args.query_timeout_rows.split(":", 1)
        plan.query_timeout(int(rows), _count(count[0]) if count else None)
    if args.fail_bulk_jobs:
        plan.fail_bulk_jobs(args.fail_bulk_jobs)


def org_config(args: argparse.Namespace) -> Any:
    from .org import OrgConfig

    counts: dict[str, int] = {}
    for spec in args.count:
        name, separator, number = spec.partition("=")
        if not separator or not name:
            raise ValueError(f"--count expects OBJECT=N, not {spec!r}")
        counts[name] = int(number)
    return OrgConfig(
        seed=args.seed,
        scale=args.scale,
        counts=counts,
        tags=not args.no_tags,
        schedules=not args.no_schedules,
        custom=not args.no_custom,
        wide_object=args.wide_object,
        wide_fields=args.wide_fields,
        describe_dir=args.describe_dir,
        describe_dir_only=args.describe_dir_only,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.describe_dir_only and args.describe_dir is None:
        parser.error("--describe-dir-only needs --describe-dir")
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())

    try:
        config = org_config(args)
        credentials = Credentials(
            args.username,
            args.password,
            args.security_token,
            args.client_id,
            args.client_secret,
            args.refresh_token,
        )
        started = time.monotonic()
        print(
            f"salesforce-emulator: generating the org (seed {args.seed}, scale {args.scale})", file=sys.stderr
        )
        emulator = Emulator(
            config,
            host=args.host,
            port=args.port,
            tls=args.tls,
            session_lifetime=args.session_lifetime,
            api_limit=args.api_limit,
            credentials=credentials,
            tls_dir=args.tls_dir,
            rotate_refresh_tokens=args.rotate_refresh_tokens,
            organization_id=args.organization_id,
            gzip=args.gzip,
            allow_remote=args.allow_remote,
            verbose=args.verbose,
        )
        arm_faults(emulator.faults, args)
        emulator.start()
    except (ValueError, OSError) as error:
        print(f"salesforce-emulator: error: {error}", file=sys.stderr)
        return 2
    print(f"salesforce-emulator: ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
    print(emulator.start_line(), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        print("salesforce-emulator: stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
