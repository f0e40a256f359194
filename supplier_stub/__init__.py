"""supplier_stub: a reference supplier integration point (receiver of envelopes).

Public face: :class:`SupplierStub` with :class:`StubConfig` — ``await
stub.start()`` listens on every supplier's port, ``await stub.stop()``;
:func:`document_check_for` builds its document validation; :class:`OwnKeyPair`
serves a supplier with its own certificate and key instead of the state's;
:func:`write_faults` writes the fault file a running stub reads (docs/files.md),
:func:`read_faults` reads it and :func:`set_disk_full` fills or frees the
stub's disk in it (the ``DISK_FULL`` rule).
"""

from supplier_stub.app import ENVELOPE_PATH, StubConfig, SupplierStub, serve_forever
from supplier_stub.doccheck import document_check_for
from supplier_stub.faults import DISK_FULL, read_faults, set_disk_full, write_faults
from supplier_stub.keys import OwnKeyPair

__all__ = [
    "DISK_FULL",
    "ENVELOPE_PATH",
    "OwnKeyPair",
    "StubConfig",
    "SupplierStub",
    "document_check_for",
    "read_faults",
    "serve_forever",
    "set_disk_full",
    "write_faults",
]
