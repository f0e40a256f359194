"""supplier_stub: a reference supplier integration point (receiver of envelopes).

Public face: :class:`SupplierStub` with :class:`StubConfig` — ``await
stub.start()`` listens on every supplier's port, ``await stub.stop()``.
"""

from supplier_stub.app import ENVELOPE_PATH, StubConfig, SupplierStub, serve_forever

__all__ = ["ENVELOPE_PATH", "StubConfig", "SupplierStub", "serve_forever"]
