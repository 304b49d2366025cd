"""singer-sdk's standard target tests, on both engines.

The standard suite asserts that the target accepts (or refuses) each sample stream; the tests beside
this file check what is stored.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.runners import TargetTestRunner

from target_warehouse_seg.target import TargetWarehouseSeg

_Standard = get_target_test_class(TargetWarehouseSeg, config={"engine": "duckdb", "path": ":memory:"})


class TestStandardDuckDB(_Standard):  # type: ignore[misc, valid-type]
    @pytest.fixture
    def runner(self, tmp_path: Path) -> TargetTestRunner:
        config = {"engine": "duckdb", "path": str(tmp_path / "standard.duckdb")}
        return TargetTestRunner(target_class=TargetWarehouseSeg, config=config)


@pytest.mark.postgres
class TestStandardPostgres(_Standard):  # type: ignore[misc, valid-type]
    @pytest.fixture
    def runner(self, postgres_database: str) -> TargetTestRunner:
        config = {"engine": "postgres", "sqlalchemy_url": postgres_database}
        return TargetTestRunner(target_class=TargetWarehouseSeg, config=config)
