"""How fast the Salesforce emulator serves records, and how much memory it needs, at 1,000,000 Accounts.

    .venv/bin/python bench/emulator_throughput.py [--accounts 1000000] [--rest-records N] [--bulk-records N]

Starts `salesforce-emulator` in a subprocess with N Account records (every other object at a tiny
scale), then measures, each with a bare `requests` client on one keep-alive connection:
- REST paging: `query` with every Account field, then `nextRecordsUrl` pages of 2,000, each parsed with
  `json`: records per second. Then the same paging with http.client reading every body whole and
  parsing only its envelope (for nextRecordsUrl): the emulator's own pace, free of the client's costs.
- Bulk API 2.0: one query job on every non-compound Account field; its result pages (maxRecords=50,000)
  parsed with the `csv` module: records per second (and the job's wait, separately).
- Baselines in the same run: the client alone parsing the same bytes (json / csv) without any HTTP,
  i.e. the ceiling a perfect server would allow this client; the emulator's rate is shown as a ratio of it.
- The emulator process's peak resident memory (VmHWM from /proc/<pid>/status).

Bars (issue 2): >= 50,000 records/s on REST; 1,000,000 records held in < 2 GB. Exit status 1 when a bar
is missed.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests

API = "58.0"
REST_BAR = 50_000
MEMORY_BAR_BYTES = 2 * 1024**3


def start_emulator(accounts: int) -> tuple[subprocess.Popen, str, dict[str, str]]:
    command = [
        sys.executable, "-m", "salesforce_emulator",
        "--count", f"Account={accounts}",
        "--scale", "0.001",
        "--api-limit", "10000000",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([process.stdout], [], [], 3600)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        raise SystemExit("the emulator did not start")
    base_url, *pairs = shlex.split(line)
    return process, base_url, dict(pair.split("=", 1) for pair in pairs)


def memory_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def login(session: requests.Session, base_url: str, credentials: dict[str, str]) -> None:
    token = session.post(
        f"{base_url}/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": credentials["client_id"],
            "client_secret": credentials["client_secret"],
            "refresh_token": credentials["refresh_token"],
        },
        timeout=60,
    ).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"


def rest_paging(
    session: requests.Session, base_url: str, fields: list[str], limit: int
) -> tuple[int, float, bytes]:
    """(records read, seconds, the first page's bytes)."""
    soql = f"SELECT {', '.join(fields)} FROM Account"
    started = time.perf_counter()
    response = session.get(f"{base_url}/services/data/v{API}/query", params={"q": soql}, timeout=600)
    response.raise_for_status()
    first_page = response.content
    page = json.loads(first_page)
    count = len(page["records"])
    while not page["done"] and count < limit:
        response = session.get(base_url + page["nextRecordsUrl"], timeout=600)
        response.raise_for_status()
        page = json.loads(response.content)
        count += len(page["records"])
    return count, time.perf_counter() - started, first_page


_NEXT_URL = re.compile(rb'^\{"totalSize":\d+,"done":(true|false)(?:,"nextRecordsUrl":"([^"]+)")?')


def rest_paging_unparsed(base_url: str, token: str, fields: list[str], limit: int) -> tuple[int, float]:
    """REST paging with http.client reading each body whole, parsing only its envelope: the emulator's
    own pace, without the client's JSON parsing and requests' small-chunk reads."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/services/data/v{API}/query?q=" + quote(f"SELECT {', '.join(fields)} FROM Account")
    count, started = 0, time.perf_counter()
    try:
        while True:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status}: {body[:200]!r}")
            envelope = _NEXT_URL.match(body)
            count += body.count(b'{"attributes":')
            if envelope is None or envelope.group(1) == b"true" or count >= limit:
                return count, time.perf_counter() - started
            path = envelope.group(2).decode()
    finally:
        connection.close()


def bulk_results(
    session: requests.Session, base_url: str, fields: list[str], limit: int
) -> tuple[int, float, float, bytes]:
    """(records read, seconds reading result pages, seconds waiting for the job, the first page's bytes)."""
    jobs = f"{base_url}/services/data/v{API}/jobs/query"
    soql = f"SELECT {', '.join(fields)} FROM Account"
    started = time.perf_counter()
    job = session.post(jobs, json={"operation": "query", "query": soql}, timeout=600)
    job.raise_for_status()
    job_id = job.json()["id"]
    while (state := session.get(f"{jobs}/{job_id}", timeout=60).json()["state"]) != "JobComplete":
        if state in ("Failed", "Aborted"):
            raise SystemExit(f"bulk job {state}")
        time.sleep(0.05)
    waited = time.perf_counter() - started
    started = time.perf_counter()
    count, locator, first_page = 0, None, b""
    while count < limit:
        params = {"maxRecords": 50_000, **({"locator": locator} if locator else {})}
        response = session.get(f"{jobs}/{job_id}/results", params=params, timeout=600)
        response.raise_for_status()
        first_page = first_page or response.content
        rows = csv.reader(io.StringIO(response.content.decode("utf-8"), newline=""))
        next(rows)  # every page has its header row
        count += sum(1 for _ in rows)
        locator = response.headers["Sforce-Locator"]
        if locator == "null":
            break
    seconds = time.perf_counter() - started
    session.delete(f"{jobs}/{job_id}", timeout=60)
    return count, seconds, waited, first_page


def json_ceiling(page: bytes) -> float:
    """Records per second this client parses REST pages at, with no server involved."""
    records = len(json.loads(page)["records"])
    rounds, started = 0, time.perf_counter()
    while time.perf_counter() - started < 2.0:
        json.loads(page)
        rounds += 1
    return records * rounds / (time.perf_counter() - started)


def csv_ceiling(page: bytes) -> float:
    rounds, records, started = 0, 0, time.perf_counter()
    while time.perf_counter() - started < 2.0:
        rows = csv.reader(io.StringIO(page.decode("utf-8"), newline=""))
        next(rows)
        records += sum(1 for _ in rows)
        rounds += 1
    return records / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument(
        "--rest-records", type=int, default=1_000_000, help="stop REST paging after N records"
    )
    parser.add_argument(
        "--bulk-records", type=int, default=1_000_000, help="stop Bulk reading after N records"
    )
    args = parser.parse_args()

    print(f"starting the emulator with {args.accounts:,} Accounts ...", file=sys.stderr)
    started = time.perf_counter()
    process, base_url, credentials = start_emulator(args.accounts)
    startup = time.perf_counter() - started
    try:
        rss_after_start = memory_kib(process.pid, "VmRSS")
        session = requests.Session()
        login(session, base_url, credentials)
        describe = session.get(
            f"{base_url}/services/data/v{API}/sobjects/Account/describe", timeout=60
        ).json()
        all_fields = [field["name"] for field in describe["fields"]]
        compound = {
            field["compoundFieldName"] for field in describe["fields"] if field.get("compoundFieldName")
        }
        bulk_fields = [name for name in all_fields if name not in compound]

        print("REST paging ...", file=sys.stderr)
        rest_count, rest_seconds, rest_page = rest_paging(session, base_url, all_fields, args.rest_records)
        print("REST paging, envelope only ...", file=sys.stderr)
        token = session.headers["Authorization"].removeprefix("Bearer ")
        raw_count, raw_seconds = rest_paging_unparsed(base_url, token, all_fields, args.rest_records)
        print("Bulk 2.0 results ...", file=sys.stderr)
        bulk_count, bulk_seconds, bulk_wait, bulk_page = bulk_results(
            session, base_url, bulk_fields, args.bulk_records
        )
        peak_kib = memory_kib(process.pid, "VmHWM")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)

    rest_rate = rest_count / rest_seconds
    raw_rate = raw_count / raw_seconds
    bulk_rate = bulk_count / bulk_seconds
    rest_ceiling = json_ceiling(rest_page)
    bulk_ceiling = csv_ceiling(bulk_page)
    rows = [
        ("Accounts in the org", f"{args.accounts:,}", ""),
        ("emulator start (generate + listen)", f"{startup:.1f} s", ""),
        ("RSS after start", f"{rss_after_start / 1024:,.0f} MiB", ""),
        (f"REST paging, {len(all_fields)} fields, json", f"{rest_rate:,.0f} rec/s",
         f"{rest_count:,} records in {rest_seconds:.1f} s"),
        ("  client-only json parse ceiling", f"{rest_ceiling:,.0f} rec/s",
         f"emulator = {rest_rate / rest_ceiling:.2f} x ceiling"),
        ("  same paging, http.client, no JSON parsing", f"{raw_rate:,.0f} rec/s",
         f"{raw_count:,} records in {raw_seconds:.1f} s (the emulator's own pace)"),
        (f"Bulk 2.0 results, {len(bulk_fields)} fields, csv", f"{bulk_rate:,.0f} rec/s",
         f"{bulk_count:,} records in {bulk_seconds:.1f} s (job wait {bulk_wait:.1f} s)"),
        ("  client-only csv parse ceiling", f"{bulk_ceiling:,.0f} rec/s",
         f"emulator = {bulk_rate / bulk_ceiling:.2f} x ceiling"),
        ("emulator peak RSS (VmHWM)", f"{peak_kib / 1024:,.0f} MiB", ""),
    ]  # fmt: skip
    width = max(len(row[0]) for row in rows)
    print(f"\nSalesforce emulator throughput ({API}, one keep-alive connection, requests)")
    for label, value, note in rows:
        print(f"  {label:<{width}}  {value:>16}  {note}")
    rest_ok = rest_rate >= REST_BAR
    memory_ok = peak_kib * 1024 < MEMORY_BAR_BYTES or args.accounts < 1_000_000
    print(f"\nbar: REST >= {REST_BAR:,} rec/s to a requests + json client: {'PASS' if rest_ok else 'FAIL'}")
    print(f"     (emulator's own pace {raw_rate:,.0f} rec/s; json client ceiling {rest_ceiling:,.0f} rec/s)")
    print(f"bar: {args.accounts:,} records held in < 2 GB: {'PASS' if memory_ok else 'FAIL'}")
    return 0 if rest_ok and memory_ok else 1


if __name__ == "__main__":
    sys.exit(main())
