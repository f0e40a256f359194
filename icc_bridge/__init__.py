"""icc_bridge: the integration platform (ICC) between KA's queue and the suppliers.

Public face: :class:`Bridge` with :class:`BridgeConfig` — build it, ``await
bridge.run(stop_event)``, set the event to stop.  Pull mode: give the bridge an
``outbox`` and run a :class:`PullApi` on the same file (docs/pull.md); a
:class:`PullFaultPlan` makes it lose an acknowledgement or answer 503 on purpose.
Faults for tests and teaching: :func:`write_delivery_faults` (and
:func:`write_hold_ack`, a kill point) writes the
fault file a running ICC reads (docs/files.md), :func:`read_delivery_faults`
reads it back.  TEST ONLY, never in production: :func:`read_test_switches`
reads the switches that break pinning or retries on purpose
(icc_bridge/broken_on_purpose.py), for proving that ``b2bsim conformance
--icc`` catches a broken ICC.
"""

from icc_bridge.bridge import Bridge, envelope_id_for
from icc_bridge.bridge_config import BridgeConfig
from icc_bridge.broken_on_purpose import IccTestSwitches, read_test_switches
from icc_bridge.faults import read_delivery_faults, write_delivery_faults, write_hold_ack
from icc_bridge.outbox import Outbox
from icc_bridge.pull_api import PullApi, PullApiConfig
from icc_bridge.pull_faults import PullFaultPlan
from simulator.vocabulary.retry import RetryPolicy

__all__ = [
    "Bridge",
    "BridgeConfig",
    "IccTestSwitches",
    "Outbox",
    "PullApi",
    "PullApiConfig",
    "PullFaultPlan",
    "RetryPolicy",
    "envelope_id_for",
    "read_delivery_faults",
    "read_test_switches",
    "write_delivery_faults",
    "write_hold_ack",
]
