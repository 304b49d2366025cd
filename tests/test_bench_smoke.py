"""The benchmarks cannot rot: a tiny-mode run of bench/target_throughput.py, and its checks can fail.

The tiny run loads a few hundred rows of datasets a and b (c differs only in shape) with both baselines
and target-warehouse-seg on both engines (the peer's own venv is skipped). Its speed bars are meaningless
at that size, so this test asserts that every run happened and stored exactly what it was given, never
the bars.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import datasets  # noqa: E402
import target_throughput  # noqa: E402


def test_rows_are_deterministic_and_a_prefix_is_the_same_rows() -> None:
    spec = datasets.SPECS["a"]
    assert datasets.row_values(spec, 17, "inserts") == datasets.row_values(spec.with_rows(20), 17, "inserts")
    inserts, updates = datasets.row_values(spec, 17, "inserts"), datasets.row_values(spec, 17, "updates")
    assert inserts[0] == updates[0]  # same key
    assert updates[1] > inserts[1]  # newer system_modstamp
    assert inserts != updates
    assert len(datasets.SPECS["b"].columns) == 300 and len(datasets.SPECS["c"].columns) == 10


def test_singer_and_csv_files_hold_the_same_rows(tmp_path: Path) -> None:
    spec = datasets.SPECS["a"].with_rows(50)
    files = datasets.write_files(spec, "updates", tmp_path)
    lines = [json.loads(line) for line in files.singer.read_text().splitlines()]
    assert lines[0]["type"] == "SCHEMA" and lines[0]["key_properties"] == ["id"]
    assert lines[0]["bookmark_properties"] == ["system_modstamp"]
    records = [line for line in lines if line["type"] == "RECORD"]
    assert len(records) == 50 and all(line["time_extracted"].endswith("Z") for line in records)
    assert [line for line in lines if line["type"] == "STATE"][-1] == files.final_state == lines[-1]
    assert records[7]["record"] == dict(
        zip(spec.column_names, datasets.row_values(spec, 7, "updates"), strict=True)
    )
    import csv

    with files.csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 50 and len(rows[7]) == len(spec.columns) + 1


def _fetcher_returning(spec: datasets.DatasetSpec, phase: str, count: int, corrupt: str | None):
    def fetch(columns: list[str], ids: list[str]):
        rows = {}
        for row_id in ids:
            index = int(row_id[5:])
            values = [*datasets.row_values(spec, index, phase), datasets.time_extracted(index, phase)]
            stored = []
            for column, value in zip(spec.columns, values, strict=False):
                if column.kind == "datetime" and value is not None:
                    value = target_throughput._expected_datetime(value)
                stored.append(value)
            stored.append(target_throughput._expected_datetime(values[-1]))
            record = dict(zip(columns, stored, strict=True))
            if corrupt:
                record[corrupt] = "tampered"
            rows[row_id] = tuple(record.values())
        return count, rows

    return fetch


def test_the_table_check_accepts_a_right_load_and_catches_a_wrong_one(tmp_path: Path) -> None:
    spec = datasets.SPECS["a"].with_rows(30)
    files = datasets.write_files(spec, "inserts", tmp_path)
    assert target_throughput.check_table(files, _fetcher_returning(spec, "inserts", 30, None), True) == []
    short = target_throughput.check_table(files, _fetcher_returning(spec, "inserts", 29, None), True)
    assert short == ["row count 29, expected 30"]
    wrong = target_throughput.check_table(files, _fetcher_returning(spec, "inserts", 30, "string_03"), True)
    assert wrong and all("string_03" in problem for problem in wrong)
    stale = target_throughput.check_table(files, _fetcher_returning(spec, "updates", 30, None), True)
    assert stale, "rows of the other phase must not pass"


def test_repeated_runs_report_the_median_time_the_highest_memory_and_any_failure() -> None:
    def run(wall: float, peak: float, ok: bool = True, own: float = 150.0) -> target_throughput.RunResult:
        problems = [] if ok else ["row count 1, expected 2"]
        return target_throughput.RunResult(
            "a",
            "updates",
            "duckdb",
            "duckdb-seg",
            "seg",
            2,
            wall_seconds=wall,
            peak_mb=peak,
            own_mb=own,
            ok=ok,
            problems=problems,
            load_average=0.5,
        )

    combined = target_throughput.combine([run(5.0, 250.0, own=170.0), run(9.0, 240.0), run(6.0, 280.0)])
    assert (combined.wall_seconds, combined.peak_mb, combined.ok) == (6.0, 280.0, True)
    assert combined.own_mb == 170.0  # the highest anonymous memory, whichever run had it
    assert combined.wall_samples == [5.0, 9.0, 6.0]
    failed = target_throughput.combine([run(5.0, 250.0), run(4.0, 240.0, ok=False), run(6.0, 280.0)])
    assert not failed.ok and failed.problems == ["row count 1, expected 2"]
    assert target_throughput.combine([run(7.0, 200.0)]).wall_seconds == 7.0


@pytest.mark.postgres
def test_tiny_benchmark_run_loads_every_dataset_correctly(postgres_url: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "target_throughput.py"),
            "--skip-peer",
            "--datasets",
            "a,b",
            "--rows-scale",
            "0.0005",
            "--repeat",
            "2",
            "--postgres-url",
            postgres_url,
            "--work-dir",
            str(tmp_path / "work"),
            "--results",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode in (0, 1), completed.stderr[-3000:]  # 1: a speed bar, meaningless here
    report = json.loads(next(results.glob("target_throughput-*.json")).read_text())
    runs = {(run["dataset"], run["phase"], run["engine"], run["loader"]): run for run in report["runs"]}
    loaders = [
        ("postgres", "baseline"),
        ("postgres", "seg"),
        ("duckdb", "duckdb-baseline"),
        ("duckdb", "duckdb-seg"),
    ]
    for dataset in "ab":
        for phase in ("inserts", "updates"):
            for engine, loader in loaders:
                run = runs[(dataset, phase, engine, loader)]
                assert run["ok"], f"{dataset} {phase} {engine}/{loader}: {run['problems']}"
                assert run["wall_seconds"] > 0 and run["peak_mb"] > 0
                assert 0 < run["own_mb"] < run["peak_mb"]
                # Repeated: the median of two runs is their mean, and the peak the higher one's.
                samples = run["wall_samples"]
                assert len(samples) == 2 and run["wall_seconds"] == pytest.approx(sum(samples) / 2)
    for dataset in "ab":  # the informational bounded DuckDB baseline runs too (small data fits its limit)
        bounded = runs[(dataset, "inserts", "duckdb", "duckdb-bounded")]
        assert bounded["ok"] and bounded["wall_seconds"] > 0, bounded["problems"]
    assert "memory_limit 200MB" in completed.stdout
    assert "PASS" in completed.stdout or "FAIL" in completed.stdout
    assert not (tmp_path / "work").exists(), "the work folder is removed unless --keep"
