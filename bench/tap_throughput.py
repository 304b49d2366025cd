"""How fast the tap syncs Accounts from the emulator over REST and Bulk API 2.0, against a bare client.

    .venv/bin/python bench/tap_throughput.py [--counts 50000,200000] [--apis rest,bulk] [--repeat 2]

For each record count the emulator is started as a subprocess (`--count Account=N`, every other
object tiny), the tap's catalog is discovered with the real CLI, and only `accounts` is selected with
all its standard fields (custom `__c` fields deselected). Then, for each API:
- tap: `python -m tap_salesforce_seg.tap --config --catalog` (api_type rest / bulk) as a subprocess;
  its stdout goes to a counting sink in this process (RECORD lines counted, everything else checked to
  be a Singer message);
- bare client, the limit: a subprocess of this script (`--bare rest|bulk`) that pages the very same
  query with requests and parses it: `response.json()` per REST page (`nextRecordsUrl`), or a Bulk 2.0
  job with the same `maxRecords` pages parsed by `csv.reader`; it converts nothing and writes nothing.
Both are timed from process start to exit (imports and login included); their CPU seconds and peak
memory (max RSS) come from `wait4` rusage. Each pair runs `--repeat` times (bare, then tap); tap/bare is
the median of the pairs' ratios, the rates shown are each side's best.

Bars (issue 3): at the largest count (200,000) the tap reaches >= 50% of the bare client's rate on both
paths, and its peak memory does not grow with the record count (200,000 vs 50,000: within 1.5x). The
machine is shared, so rates are noisy; CPU seconds are shown as the steadier measure of work done. Exit
status 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import select
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

API_VERSION = "58.0"
RATE_BAR = 0.5
MEMORY_GROWTH_BAR = 1.5


# --- the emulator ---------------------------------------------------------------------------------


def start_emulator(accounts: int) -> tuple[subprocess.Popen, str, dict[str, str]]:
    command = [
        sys.executable, "-m", "salesforce_emulator",
        "--count", f"Account={accounts}", "--scale", "0.001", "--api-limit", "100000000",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([process.stdout], [], [], 1800)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        raise SystemExit("the emulator did not start")
    url, *pairs = shlex.split(line)
    return process, url, dict(pair.split("=", 1) for pair in pairs)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- a measured subprocess ------------------------------------------------------------------------


class Measurement(NamedTuple):
    seconds: float  # wall time, process start to exit
    records: int
    rss: int  # peak resident memory, bytes
    cpu: float  # user + system CPU seconds of the process


def measured(command: list[str], sink: Any) -> tuple[float, int, int, float]:
    """Run `command`, feed its stdout to `sink(bytes)`: (seconds, exit status, max RSS bytes, CPU s)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stderr_chunks: list[bytes] = []
    streams = {process.stdout.fileno(): process.stdout, process.stderr.fileno(): process.stderr}
    while streams:
        ready, _, _ = select.select(list(streams), [], [])
        for fd in ready:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                del streams[fd]
            elif fd == process.stdout.fileno():
                sink(chunk)
            else:
                stderr_chunks.append(chunk)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.stderr.write(b"".join(stderr_chunks).decode(errors="replace")[-3000:])
    return seconds, process.returncode, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


class CountingSink:
    """Counts the RECORD lines of a Singer stream at C speed (the sink must not slow the tap down), and
    keeps the other lines (SCHEMA, STATE: a few) to check that they are Singer messages."""

    MARKER = b'{"type":"RECORD"'

    def __init__(self) -> None:
        self.records = 0
        self.lines = 0
        self._carry = b""

    def __call__(self, chunk: bytes) -> None:
        data = self._carry + chunk
        self.records += data.count(self.MARKER)
        self.lines += chunk.count(b"\n")
        # A marker cut by the chunk boundary is not in `data`.count: it completes with the next chunk.
        self._carry = data[-(len(self.MARKER) - 1) :]

    def check(self) -> None:
        if self.lines - self.records > 1000:
            raise SystemExit(f"{self.lines - self.records} non-RECORD lines on the tap's stdout")


# --- setup: settings and catalog ------------------------------------------------------------------


def settings(url: str, credentials: dict[str, str], api_type: str) -> dict[str, Any]:
    return {
        "client_id": credentials["client_id"],
        "client_secret": credentials["client_secret"],
        "refresh_token": credentials["refresh_token"],
        "domain": url,
        "api_version": API_VERSION,
        "api_type": api_type,
        "quota_percent": 100,
    }


def accounts_catalog(config_path: Path) -> dict[str, Any]:
    """Discovery through the CLI, then only `accounts` selected, with every standard field."""
    output = subprocess.run(
        [sys.executable, "-m", "tap_salesforce_seg.tap", "--config", str(config_path), "--discover"],
        check=True,
        capture_output=True,
    ).stdout
    catalog = json.loads(output)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            meta = item["metadata"]
            if not item["breadcrumb"]:
                meta["selected"] = entry["tap_stream_id"] == "accounts"
            else:
                meta["selected"] = not meta["salesforce-field"].endswith("__c")
    return catalog


def account_fields(catalog: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field, property, type) of the selected Account properties, in catalog order (as the tap)."""
    entry = next(e for e in catalog["streams"] if e["tap_stream_id"] == "accounts")
    return [
        (item["metadata"]["salesforce-field"], item["breadcrumb"][-1], item["metadata"]["salesforce-type"])
        for item in entry["metadata"]
        if item["breadcrumb"] and item["metadata"].get("selected")
    ]


# --- the bare client (runs as `--bare rest|bulk` in its own process) ------------------------------


def bare_client(kind: str, config_path: Path, catalog_path: Path) -> None:
    import requests

    from tap_salesforce_seg.extract import QueryPlan
    from tap_salesforce_seg.extract.bulk import BulkExtractor
    from tap_salesforce_seg.soql import build_query

    config = json.loads(config_path.read_text())
    catalog = json.loads(catalog_path.read_text())
    session = requests.Session()
    token = session.post(
        f"{config['domain']}/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": config["client_id"],
            "client_secret": config["client_secret"],
            "refresh_token": config["refresh_token"],
        },
        timeout=60,
    ).json()
    session.headers["Authorization"] = f"Bearer {token['access_token']}"
    base = f"{token['instance_url']}/services/data/v{API_VERSION}"
    fields = account_fields(catalog)
    names = [name for name, _, _ in fields]
    soql = build_query("Account", names, replication_field="SystemModstamp", window_end=datetime.now(UTC))
    count = 0
    if kind == "rest":
        page = session.get(f"{base}/queryAll", params={"q": soql}, timeout=300).json()
        while True:
            count += len(page["records"])
            if page["done"]:
                break
            page = session.get(f"{token['instance_url']}{page['nextRecordsUrl']}", timeout=300).json()
    else:
        job = session.post(
            f"{base}/jobs/query",
            json={"operation": "queryAll", "query": soql, "contentType": "CSV", "lineEnding": "LF"},
            timeout=300,
        ).json()
        delay = BulkExtractor.poll_first_seconds
        while session.get(f"{base}/jobs/query/{job['id']}", timeout=300).json()["state"] != "JobComplete":
            time.sleep(delay)
            delay = min(delay * BulkExtractor.poll_growth, BulkExtractor.poll_max_seconds)
        plan = QueryPlan("Account", tuple(fields), "SystemModstamp")
        page_size = BulkExtractor(None)._page_size(plan)  # type: ignore[arg-type]
        locator = None
        while True:
            params = {"maxRecords": str(page_size)}
            if locator:
                params["locator"] = locator
            response = session.get(f"{base}/jobs/query/{job['id']}/results", params=params, timeout=300)
            reader = csv.reader(io.StringIO(response.content.decode("utf-8"), newline=""))
            next(reader)
            count += sum(1 for _ in reader)
            locator = response.headers.get("Sforce-Locator")
            if not locator or locator == "null":
                break
        session.delete(f"{base}/jobs/query/{job['id']}", timeout=300)
    print(count)


# --- the benchmark --------------------------------------------------------------------------------


def run_tap(config_path: Path, catalog_path: Path) -> Measurement:
    sink = CountingSink()
    command = [
        sys.executable, "-m", "tap_salesforce_seg.tap",
        "--config", str(config_path), "--catalog", str(catalog_path),
    ]  # fmt: skip
    seconds, status, rss, cpu = measured(command, sink)
    if status != 0:
        raise SystemExit(f"the tap failed with exit status {status}")
    sink.check()
    return Measurement(seconds, sink.records, rss, cpu)


def run_bare(kind: str, config_path: Path, catalog_path: Path) -> Measurement:
    output = bytearray()
    command = [
        sys.executable, __file__, "--bare", kind,
        "--config", str(config_path), "--catalog", str(catalog_path),
    ]  # fmt: skip
    seconds, status, rss, cpu = measured(command, output.extend)
    if status != 0:
        raise SystemExit(f"the bare {kind} client failed with exit status {status}")
    return Measurement(seconds, int(output.decode().strip()), rss, cpu)


def benchmark(counts: list[int], apis: list[str], repeat: int) -> int:
    results: dict[tuple[int, str], list[tuple[Measurement, Measurement]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for accounts in counts:
            started = time.perf_counter()
            emulator, url, credentials = start_emulator(accounts)
            progress(f"emulator with {accounts:,} Accounts ready in {time.perf_counter() - started:.1f} s")
            try:
                base_config = Path(folder, f"discover-{accounts}.json")
                base_config.write_text(json.dumps(settings(url, credentials, "rest")))
                catalog_path = Path(folder, f"catalog-{accounts}.json")
                catalog = accounts_catalog(base_config)
                catalog_path.write_text(json.dumps(catalog))
                progress(f"accounts: {len(account_fields(catalog))} standard fields selected")
                for api in apis:
                    config_path = Path(folder, f"config-{accounts}-{api}.json")
                    config_path.write_text(json.dumps(settings(url, credentials, api)))
                    pairs = []
                    for attempt in range(1, repeat + 1):
                        bare = run_bare(api, config_path, catalog_path)
                        tap = run_tap(config_path, catalog_path)
                        for who, measurement in (("bare", bare), ("tap", tap)):
                            show(api, who, attempt, measurement)
                            if measurement.records != accounts:
                                raise SystemExit(
                                    f"{who} read {measurement.records:,} records, the org has {accounts:,}"
                                )
                        pairs.append((bare, tap))
                    results[(accounts, api)] = pairs
            finally:
                stop(emulator)
    return report(results, counts, apis)


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def show(api: str, who: str, attempt: int, m: Measurement) -> None:
    progress(
        f"  {api:4} {who:4} run {attempt}: {m.records:,} records in {m.seconds:.2f} s = "
        f"{m.records / m.seconds:,.0f} records/s, CPU {m.cpu:.2f} s, peak RSS {m.rss / 2**20:.0f} MiB"
    )


def report(results: dict, counts: list[int], apis: list[str]) -> int:
    """Per (count, api): the best rate of each side, and tap/bare as the median of the runs' pairs
    (a bare run and the tap run right after it see the same load on this shared machine)."""
    print()
    print(f"{'records':>8} {'api':4} {'bare rec/s':>11} {'tap rec/s':>10} {'tap/bare':>8} "
          f"{'bare CPU':>9} {'tap CPU':>8} {'bare RSS':>9} {'tap RSS':>8}")  # fmt: skip
    failures = []
    peak: dict[tuple[int, str], int] = {}
    for accounts in counts:
        for api in apis:
            pairs = results[(accounts, api)]
            bare_rate = max(accounts / bare.seconds for bare, _ in pairs)
            tap_rate = max(accounts / tap.seconds for _, tap in pairs)
            ratio = statistics.median(bare.seconds / tap.seconds for bare, tap in pairs)
            bare_cpu = min(bare.cpu for bare, _ in pairs)
            tap_cpu = min(tap.cpu for _, tap in pairs)
            bare_rss = max(bare.rss for bare, _ in pairs)
            peak[(accounts, api)] = tap_rss = max(tap.rss for _, tap in pairs)
            print(
                f"{accounts:>8,} {api:4} {bare_rate:>11,.0f} {tap_rate:>10,.0f} {ratio:>8.2f} "
                f"{bare_cpu:>7.1f} s {tap_cpu:>6.1f} s "
                f"{bare_rss / 2**20:>5.0f} MiB {tap_rss / 2**20:>4.0f} MiB"
            )
            # The bar is on the 200,000-record sync (the largest count); smaller counts are shown
            # for memory, and their rates carry the tap's fixed start-up (imports, describes) more.
            if accounts == max(counts) and ratio < RATE_BAR:
                failures.append(f"{api} at {accounts:,}: tap/bare {ratio:.2f} < {RATE_BAR}")
    if len(counts) > 1:
        low, high = min(counts), max(counts)
        for api in apis:
            growth = peak[(high, api)] / peak[(low, api)]
            print(f"tap peak RSS {high:,} vs {low:,} records ({api}): x{growth:.2f}")
            if growth > MEMORY_GROWTH_BAR:
                failures.append(f"{api}: peak memory grew x{growth:.2f} from {low:,} to {high:,} records")
    print()
    for failure in failures:
        print(f"BAR MISSED: {failure}")
    print("all bars met" if not failures else f"{len(failures)} bar(s) missed")
    save(results, failures)
    return 1 if failures else 0


def save(results: dict, failures: list[str]) -> None:
    """The runs as JSON in bench/results/ (git-ignored), next to the other benchmarks' results."""
    folder = ROOT / "bench" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"tap_throughput-{time.strftime('%Y%m%d-%H%M%S')}.json"
    runs = [
        {"records": accounts, "api": api, "attempt": n, "side": side, **measurement._asdict()}
        for (accounts, api), pairs in results.items()
        for n, pair in enumerate(pairs, 1)
        for side, measurement in zip(("bare", "tap"), pair, strict=True)
    ]
    path.write_text(json.dumps({"command": sys.argv, "runs": runs, "failures": failures}, indent=1))
    progress(f"results: {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="50000,200000", help="Account counts (comma-separated)")
    parser.add_argument("--apis", default="rest,bulk", help="rest, bulk or both")
    parser.add_argument(
        "--repeat", type=int, default=2, help="paired runs per measurement (tap/bare is their median)"
    )
    parser.add_argument("--bare", choices=("rest", "bulk"), help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--catalog", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_client(args.bare, args.config, args.catalog)
        return 0
    counts = [int(text) for text in args.counts.split(",")]
    apis = [text.strip() for text in args.apis.split(",")]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; command: {' '.join(sys.argv)}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return benchmark(counts, apis, args.repeat)


if __name__ == "__main__":
    sys.exit(main())
