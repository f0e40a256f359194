"""Errors of document generation (subclasses of the simulator's error tree)."""

from __future__ import annotations

from simulator.vocabulary.errors import B2BSimError


class DocumentChainError(B2BSimError, ValueError):
    """A document cannot follow the one given: wrong type, other seller, or unreadable."""

    code = "DOCUMENT_CHAIN"
