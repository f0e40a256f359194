"""ka_producer: a fake KA that publishes purchase orders, self-invoices and credits.

Public face: :class:`Producer` (publish documents onto the KA queue), the
publishing loop of ``b2bsim serve producer`` (:func:`produce_chains`,
:func:`publish_round`, :class:`Pacer`, :func:`documents_for`) and the
document generator in :mod:`ka_producer.documents`.
"""

from ka_producer.producer import RECEIPT_EVERY, Producer
from ka_producer.service import Pacer, documents_for, produce_chains, publish_round

__all__ = [
    "RECEIPT_EVERY",
    "Pacer",
    "Producer",
    "documents_for",
    "produce_chains",
    "publish_round",
]
