"""The technical envelope (tekniskt kuvert), in one import.

The envelope's parts live in modules named for what they hold; this module
gathers what its users name:

* :mod:`~simulator.vocabulary.envelope_model`: :class:`Envelope`, the value
  and its field rules;
* :mod:`~simulator.vocabulary.envelope_xml`: its XML form (``env:Envelope``
  around an SBDH document), :func:`to_xml` and :func:`from_xml`, the namespaces;
* :mod:`~simulator.vocabulary.canonical`: the canonical form of the document
  an envelope carries (:func:`normalise_document`);
* :mod:`~simulator.vocabulary.timestamps`: the envelope's time format;
* :mod:`~simulator.vocabulary.addressee`: :func:`check_addressee`, whether an
  envelope is addressed to this supplier.

The format is described in ``docs/envelope.md``; signing and opening signed
envelopes is :mod:`simulator.vocabulary.signing`'s.
"""

from __future__ import annotations

from simulator.vocabulary.addressee import check_addressee, normalise_url
from simulator.vocabulary.canonical import normalise_document
from simulator.vocabulary.envelope_model import Envelope
from simulator.vocabulary.envelope_xml import (
    DS_NS,
    ENV_NS,
    PARTNER_AUTHORITY,
    SBDH_NS,
    UBL_NAMESPACES,
    ParsedEnvelope,
    Scope,
    from_xml,
    parse_envelope,
    to_xml,
)
from simulator.vocabulary.timestamps import format_timestamp, parse_timestamp

__all__ = [
    "DS_NS",
    "ENV_NS",
    "PARTNER_AUTHORITY",
    "SBDH_NS",
    "UBL_NAMESPACES",
    "Envelope",
    "ParsedEnvelope",
    "Scope",
    "check_addressee",
    "format_timestamp",
    "from_xml",
    "normalise_document",
    "normalise_url",
    "parse_envelope",
    "parse_timestamp",
    "to_xml",
]
