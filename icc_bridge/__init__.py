"""icc_bridge: the integration platform (ICC) between KA's queue and the suppliers.

Public face: :class:`Bridge` with :class:`BridgeConfig` — build it, ``await
bridge.run(stop_event)``, set the event to stop.  Pull mode: give the bridge an
``outbox`` and run a :class:`PullApi` on the same file (docs/pull.md).
Faults for tests and teaching: :func:`write_delivery_faults` (and
:func:`write_hold_ack`, a kill point) writes the
fault file a running ICC reads (docs/files.md), :func:`read_delivery_faults`
reads it back.
"""

from icc_bridge.bridge import Bridge, BridgeConfig, envelope_id_for
from icc_bridge.faults import read_delivery_faults, write_delivery_faults, write_hold_ack
from icc_bridge.outbox import Outbox
from icc_bridge.pull_api import PullApi, PullApiConfig
from simulator.vocabulary.retry import RetryPolicy

__all__ = [
    "Bridge",
    "BridgeConfig",
    "Outbox",
    "PullApi",
    "PullApiConfig",
    "RetryPolicy",
    "envelope_id_for",
    "read_delivery_faults",
    "write_delivery_faults",
    "write_hold_ack",
]
