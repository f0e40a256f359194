"""What the ICC bridge needs to start, checked before it starts (``b2bsim serve icc``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from icc_bridge.broken_on_purpose import IccTestSwitches
from simulator.vocabulary.broker_source import GIVE_UP_AFTER
from simulator.vocabulary.messages import KA_QUEUE
from simulator.vocabulary.retry import RetryPolicy

__all__ = ["BridgeConfig"]


@dataclass
class BridgeConfig:
    """Everything the bridge needs, checked before it starts."""

    broker_url: str
    registry: Path
    ca_cert: Path
    icc_cert: Path
    icc_key: Path
    queue: str = KA_QUEUE
    events_log: Path | None = None
    prefetch: int = 200
    request_timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    faults: Path | None = None  # a scenario's delivery faults (icc_bridge/faults.py)
    crl: Path | None = None  # the AF test CA's CRL: a revoked supplier gets nothing
    outbox: Path | None = None  # where pull suppliers' envelopes wait (icc_bridge/outbox.py)
    server_ca: Path | None = None  # trust pushed-to servers issued by these CAs (default ca_cert)
    broker_file: Path | None = None  # follow the broker this broker.json names (on reconnect)
    broker_give_up: float = GIVE_UP_AFTER  # seconds to look for a lost broker, then stop
    # Append every envelope signed for a push here, as sent (JSON lines, docs/files.md).
    sent_log: Path | None = None
    #: TEST ONLY, never in production: pinning or retries off (icc_bridge/broken_on_purpose.py)
    test_switches: IccTestSwitches = field(default_factory=IccTestSwitches)
