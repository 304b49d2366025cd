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

from .auth import Credentials
from .bulk import BulkTiming
from .control import ControlClient, ControlError
from .errors import ApiError
from .faults import FaultPlan
from .org import Org, OrgConfig
from .server import Emulator

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
