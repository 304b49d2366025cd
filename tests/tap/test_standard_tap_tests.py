"""singer-sdk's standard tap tests (`get_tap_test_class`) against the emulator over real HTTP.

The framework builds its test parameters when this module is imported (it lists the tap's streams),
so the emulator starts at import and stops when the module's tests are done. To keep the run small the
org is tiny and the catalog holds a handful of streams that cover the shapes that matter: a wide
incremental object, one without IsDeleted, the LastModifiedDate and CreatedDate replication keys, and
a custom object (selected explicitly: custom objects are not selected by default).
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator

import pytest
from emulator_fixtures import start_emulator
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_salesforce_seg.tap import TapSalesforceSeg

STREAMS = ("accounts", "_group", "campaign_shares", "opportunity_field_history", "invoice_c")

EMULATOR = start_emulator(scale=0.005)
atexit.register(EMULATOR.stop)
CONFIG = {
    "client_id": EMULATOR.credentials.client_id,
    "client_secret": EMULATOR.credentials.client_secret,
    "refresh_token": EMULATOR.credentials.refresh_token,
    "domain": EMULATOR.base_url,
}


def small_catalog() -> dict:
    catalog = TapSalesforceSeg(config=CONFIG, setup_mapper=False).catalog_dict
    streams = [entry for entry in catalog["streams"] if entry["tap_stream_id"] in STREAMS]
    for entry in streams:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = True
    assert sorted(entry["tap_stream_id"] for entry in streams) == sorted(STREAMS)
    return {"streams": streams}


TestTapSalesforceSeg = get_tap_test_class(
    TapSalesforceSeg,
    config=CONFIG,
    catalog=small_catalog(),
    suite_config=SuiteConfig(max_records_limit=50),
)


@pytest.fixture(scope="module", autouse=True)
def _stop_emulator_after_the_module() -> Iterator[None]:
    yield
    EMULATOR.stop()
