"""icc_bridge: the integration platform (ICC) between KA's queue and the suppliers.

Public face: :class:`Bridge` with :class:`BridgeConfig` — build it, ``await
bridge.run(stop_event)``, set the event to stop.
"""

from icc_bridge.bridge import Bridge, BridgeConfig, envelope_id_for
from simulator.retry import RetryPolicy

__all__ = ["Bridge", "BridgeConfig", "RetryPolicy", "envelope_id_for"]
