"""supplier_stub: a reference supplier integration point (receiver of envelopes).

Public face: :class:`SupplierStub` with :class:`StubConfig` — ``await
stub.start()`` listens on every supplier's port, ``await stub.stop()``;
:func:`document_check_for` builds its document validation, and
:func:`write_faults` writes the fault file a running stub reads (docs/files.md).
"""

from supplier_stub.app import ENVELOPE_PATH, StubConfig, SupplierStub, serve_forever
from supplier_stub.doccheck import document_check_for
from supplier_stub.faults import write_faults

__all__ = [
    "ENVELOPE_PATH",
    "StubConfig",
    "SupplierStub",
    "document_check_for",
    "serve_forever",
    "write_faults",
]
