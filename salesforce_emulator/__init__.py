"""A local Salesforce org that speaks Salesforce's HTTP API: the stand-in for Salesforce in this
project's tests, demo and benchmarks.

    from salesforce_emulator import Emulator, OrgConfig
    with Emulator(OrgConfig(scale=0.02)) as emu:
        emu.base_url, emu.credentials, emu.org, emu.faults

Or as a separate process: `salesforce-emulator --help` (cli.py), driven through `ControlClient`
(control.py). The layers: org.py (the Org and its control API), store.py, generator.py, model.py,
describe.py, clock.py (the data half); soql.py (SOQL); app.py (routes), auth.py, bulk.py, faults.py,
tls.py, server.py, cli.py, control.py (the HTTP half).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .auth import Credentials
from .bulk import BulkTiming
from .control import ControlClient, ControlError
from .errors import ApiError
from .faults import FaultPlan
from .server import Emulator

if TYPE_CHECKING:
    from .org import Org, OrgConfig


def __getattr__(name: str) -> Any:
    # The org (pyarrow, DuckDB) loads on first use: scripts that only drive a running emulator through
    # ControlClient, or only start one, import nothing heavy until they need it.
    if name in ("Org", "OrgConfig"):
        from . import org

        return getattr(org, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ApiError",
    "BulkTiming",
    "ControlClient",
    "ControlError",
    "Credentials",
    "Emulator",
    "FaultPlan",
    "Org",
    "OrgConfig",
]
