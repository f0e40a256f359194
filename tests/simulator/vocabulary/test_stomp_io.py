"""Tests of simulator.vocabulary.stomp_io: a broker link that fails is one clear error."""

from __future__ import annotations

import pytest

from simulator.lab.fault_proxy import FaultProxy, ProxyMode
from simulator.vocabulary.errors import BrokerUnreachableError
from simulator.vocabulary.stomp_io import StompConnection


async def test_a_link_reset_during_connect_is_broker_unreachable() -> None:
    """A reset while CONNECT is on its way (stomp.py: NotConnectedException or
    ConnectFailedException, by timing) is BrokerUnreachableError, which KA and the ICC
    retry, never a crash with a traceback (found by ``b2bsim soak``)."""
    proxy = await FaultProxy(("127.0.0.1", 9)).start()
    proxy.set_mode(ProxyMode.RESET)
    try:
        for _ in range(5):
            conn = StompConnection("127.0.0.1", proxy.port)
            with pytest.raises(BrokerUnreachableError, match="no STOMP broker answers"):
                await conn.connect(timeout=5)
            await conn.disconnect()
    finally:
        await proxy.stop()
    assert proxy.resets == 5
