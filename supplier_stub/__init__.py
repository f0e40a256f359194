"""supplier_stub."""
